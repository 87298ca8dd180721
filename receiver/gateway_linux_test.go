package receiver

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

var (
	sidecarOnce sync.Once
	sidecarPath string
	sidecarErr  error
)

// sidecarBinary builds the sidecar as make build does.
func sidecarBinary(t *testing.T) string {
	t.Helper()
	sidecarOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ebpfnet-sidecar")
		if err != nil {
			sidecarErr = err
			return
		}
		sidecarPath = filepath.Join(dir, "ebpfnet")
		build := exec.Command("go", "build", "-o", sidecarPath, "../cmd/ebpfnet")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			sidecarErr = fmt.Errorf("build sidecar: %v\n%s", err, out)
		}
	})
	if sidecarErr != nil {
		t.Fatal(sidecarErr)
	}
	return sidecarPath
}

// node is a host of the distributed test: a network namespace with an
// interface named eth9 (a veth whose other end is elsewhere), reaching the
// gateway's host over an uplink veth.
type node struct {
	name string
	ns   netns.NsHandle // the test's own for the gateway's host
	eth9 *testenv.Pair
	base testenv.Stats
}

// in runs fn in the node's namespace.
func (n *node) in(fn func() error) error {
	if n.ns == -1 {
		return fn()
	}
	return testenv.RunIn(n.ns, fn)
}

func (n *node) stats(t *testing.T) testenv.Stats {
	t.Helper()
	var s testenv.Stats
	err := n.in(func() error {
		l, err := netlink.LinkByName("eth9")
		if err != nil {
			return err
		}
		st := l.Attrs().Statistics
		s = testenv.Stats{RxPackets: st.RxPackets, RxBytes: st.RxBytes, TxPackets: st.TxPackets, TxBytes: st.TxBytes}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// uplink joins ns to the test's namespace: local in the test's, peer in ns.
func uplink(t *testing.T, ns netns.NsHandle, name string, local, peer string) {
	t.Helper()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p", PeerNamespace: netlink.NsFd(ns)}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	configure := func(dev, cidr string) error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		addr, err := netlink.ParseAddr(cidr)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(l, addr); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	}
	if err := configure(name, local); err != nil {
		t.Fatal(err)
	}
	if err := testenv.RunIn(ns, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		return configure(name+"p", peer)
	}); err != nil {
		t.Fatal(err)
	}
}

// startIn starts a process in ns (the calling thread's if -1).
func startIn(t *testing.T, ns netns.NsHandle, env []string, name string, args ...string) *process {
	t.Helper()
	if ns == -1 {
		return start(t, env, name, args...)
	}
	var p *process
	err := testenv.RunIn(ns, func() error {
		p = start(t, env, name, args...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// promQuery runs an instant PromQL query against Prometheus' HTTP API
// (client_golang's client).
func promQuery(addr, query string) ([]testenv.PromSample, error) {
	return testenv.PromQuery(addr, query, time.Time{})
}

// Many hosts, one gateway: three agents in three namespaces (the custom
// Collector with examples/otelcol/agent.yaml beside the gateway on one host,
// and two sidecars, one sending OTLP over gRPC and one over HTTP), each
// counting an interface named eth9, send to the custom Collector running
// examples/otelcol/gateway.yaml; a real Prometheus scrapes the gateway.
// PromQL gives three series per direction, one per host, labelled with it,
// each equal to that host's kernel counters.
func TestManyHostsOneGateway(t *testing.T) {
	testenv.Privileged(t)
	bin := otelcol(t)
	prometheus, err := exec.LookPath("prometheus")
	if err != nil {
		testenv.Missing(t, "prometheus (Debian's prometheus package)")
	}
	sidecar := sidecarBinary(t)

	// node1 is the test's own namespace: the gateway's host.
	nodes := []*node{{name: "node1", ns: -1}, {name: "node2"}, {name: "node3"}}
	for i, n := range nodes[1:] {
		n.ns = testenv.NewNetns(t)
		uplink(t, n.ns, fmt.Sprintf("up%d", i+2), fmt.Sprintf("203.0.113.%d/30", 4*i+1), fmt.Sprintf("203.0.113.%d/30", 4*i+2))
	}
	for _, n := range nodes {
		if err := n.in(func() error {
			var err error
			n.eth9, err = testenv.CreatePair("eth9")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.in(func() error { n.eth9.Close(); return nil }) })
	}
	for _, n := range nodes {
		if err := n.in(func() error { testenv.WaitQuiet(t, "eth9", 300*time.Millisecond); return nil }); err != nil {
			t.Fatal(err)
		}
		n.base = n.stats(t)
	}

	// The gateway and the agent on one host, each with its example's ports.
	// With its opt-in Prometheus endpoint (:8890), which Prometheus scrapes.
	gateway := startGateway(t, bin)
	agent := start(t, []string{"HOST_NAME=node1", "EBPFNET_INCLUDE=eth9", "EBPFNET_COLLECTION_INTERVAL=1s"},
		bin, "--config", filepath.Join(repoRoot, "examples", "otelcol", "agent.yaml"))
	grpcSidecar := startIn(t, nodes[1].ns, []string{"OTEL_RESOURCE_ATTRIBUTES=host.name=node2",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://203.0.113.1:4317", "OTEL_EXPORTER_OTLP_INSECURE=true"},
		sidecar, "--interfaces", "eth9", "--interval", "1s")
	httpSidecar := startIn(t, nodes[2].ns, []string{"OTEL_RESOURCE_ATTRIBUTES=host.name=node3",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://203.0.113.5:4318", "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"},
		sidecar, "--interfaces", "eth9", "--interval", "1s")

	// A real Prometheus scraping the gateway, as README says to.
	dir := t.TempDir()
	promAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := "global: {scrape_interval: 1s, evaluation_interval: 1s}\n" +
		"scrape_configs:\n  - job_name: gateway\n    honor_labels: true\n    static_configs: [{targets: ['127.0.0.1:8890']}]\n"
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := start(t, nil, prometheus, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr)

	// Each host its own amount of traffic: received from eth9's peer, sent
	// to it.
	testenv.WaitFor(t, "Prometheus to see three agents", func() bool {
		s, err := promQuery(promAddr, `sum(ebpfnet_interfaces_attached)`)
		return err == nil && len(s) == 1 && s[0].Value == 3
	})
	for i, n := range nodes {
		if err := n.in(func() error {
			if err := n.eth9.TrySendUDP(false, true, 10*(i+1), 100); err != nil {
				return err
			}
			return n.eth9.TrySendUDP(false, false, 5*(i+1), 100)
		}); err != nil {
			t.Fatal(err)
		}
	}

	type key struct{ host, direction string }
	want := map[key][2]int64{} // packets, bytes
	for _, n := range nodes {
		k := n.stats(t).Sub(n.base)
		want[key{n.name, "receive"}] = [2]int64{int64(k.RxPackets), int64(k.RxBytes)}
		want[key{n.name, "transmit"}] = [2]int64{int64(k.TxPackets), int64(k.TxBytes)}
	}
	var last string
	ok := func() bool {
		got := map[key][2]int64{}
		instances := map[string]string{} // instance -> host
		for m, metric := range []string{"system_network_packet_count_total", "system_network_io_bytes_total"} {
			samples, err := promQuery(promAddr, fmt.Sprintf(
				`sum by (instance, host_name, network_io_direction) (%s{network_interface_name="eth9"})`, metric))
			if err != nil {
				last = err.Error()
				return false
			}
			for _, s := range samples {
				k := key{s.Labels["host_name"], s.Labels["network_io_direction"]}
				if h, seen := instances[s.Labels["instance"]]; seen && h != k.host {
					last = fmt.Sprintf("instance %s carries hosts %s and %s", s.Labels["instance"], h, k.host)
					return false
				}
				instances[s.Labels["instance"]] = k.host
				v := got[k]
				v[m] += int64(s.Value)
				got[k] = v
			}
		}
		last = fmt.Sprintf("got %v, want %v (instances %v)", got, want, instances)
		if len(instances) != 3 || len(got) != len(want) {
			return false
		}
		for k, w := range want {
			if got[k] != w {
				return false
			}
		}
		return true
	}
	if !testenv.Eventually(testenv.Patience, ok) {
		t.Fatalf("PromQL never gave each host's own counts: %s", last)
	}
	t.Log(last)

	for _, p := range []*process{grpcSidecar, httpSidecar, agent, gateway, prom} {
		if code := p.stop(t); code != 0 {
			t.Errorf("%s exit %d", filepath.Base(p.cmd.Path), code)
		}
	}
}
