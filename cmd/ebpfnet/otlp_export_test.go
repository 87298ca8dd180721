package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/vishvananda/netlink"

	"github.com/ebpfnet/ebpfnet/internal/otlptest"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

func TestExportsExactCountsOverOTLP(t *testing.T) {
	testenv.Privileged(t)
	srv := otlptest.Start(t, "127.0.0.1:0")
	p := testenv.NewPair(t, "otlp0")
	testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
	kbase := testenv.LinkStats(t, p.Local)

	sc := startSidecar(t, otlpEnv(srv.Addr), "--interfaces", p.Local, "--interval", "1s")
	waitValues(t, srv, attachedIs(1))

	want := otlptest.SendKnown(t, p)
	got := waitValues(t, srv, func(v map[string]int64) bool {
		return otlptest.Matches(v, p.Local, want, testenv.LinkStats(t, p.Local).Sub(kbase))
	})

	md, _ := srv.Latest()
	res := md.ResourceMetrics().At(0).Resource().Attributes()
	for key, want := range map[string]string{"service.name": "ebpfnet", "os.type": "linux"} {
		if v, ok := res.Get(key); !ok || v.AsString() != want {
			t.Errorf("resource %s = %v, want %s", key, v.AsString(), want)
		}
	}
	if _, ok := res.Get("host.name"); !ok {
		t.Error("resource has no host.name")
	}
	if scope := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Scope().Name(); scope != "github.com/ebpfnet/ebpfnet/internal/metrics" {
		t.Errorf("scope %q", scope)
	}
	if code := sc.stop(t, syscall.SIGINT); code != 0 {
		t.Errorf("SIGINT: exit %d, want 0", code)
	}
	requireDetached(t, p)
	t.Logf("%d series exported", len(got))
}

func TestResourceFromEnvironment(t *testing.T) {
	testenv.Privileged(t)
	srv := otlptest.Start(t, "127.0.0.1:0")
	p := testenv.NewPair(t, "res0")
	env := append(otlpEnv(srv.Addr), "OTEL_SERVICE_NAME=edge-agent", "OTEL_RESOURCE_ATTRIBUTES=k8s.node.name=node-7,deployment.environment.name=test")
	startSidecar(t, env, "--interfaces", p.Local, "--interval", "1s")
	waitValues(t, srv, attachedIs(1))
	md, _ := srv.Latest()
	res := md.ResourceMetrics().At(0).Resource().Attributes()
	for key, want := range map[string]string{"service.name": "edge-agent", "k8s.node.name": "node-7", "deployment.environment.name": "test"} {
		if v, ok := res.Get(key); !ok || v.AsString() != want {
			t.Errorf("resource %s = %q, want %q", key, v.AsString(), want)
		}
	}
}

// OTEL_METRICS_EXPORTER takes a list: OTLP and a Prometheus endpoint at once.
func TestExporterList(t *testing.T) {
	testenv.Privileged(t)
	srv := otlptest.Start(t, "127.0.0.1:0")
	p := testenv.NewPair(t, "list0")
	port := testenv.FreePort(t)
	env := append(otlpEnv(srv.Addr), "OTEL_METRICS_EXPORTER=otlp,prometheus",
		"OTEL_EXPORTER_PROMETHEUS_HOST=127.0.0.1", fmt.Sprintf("OTEL_EXPORTER_PROMETHEUS_PORT=%d", port))
	sc := startSidecar(t, env, "--interfaces", p.Local, "--interval", "1s")
	waitValues(t, srv, attachedIs(1))
	p.SendUDP(t, false, true, 7, 100)
	waitValues(t, srv, func(v map[string]int64) bool {
		return otlptest.Totals(v, packetsMetric, p.Local, "receive") == 7
	})
	// The same count on the Prometheus endpoint, parsed as Prometheus
	// parses it, with host.name as a label.
	host, _ := os.Hostname()
	key := otlptest.Key("system_network_packet_count_total", "host_name="+host, "network_interface_name="+p.Local,
		"network_io_direction=receive", "network_transport=udp", "network_type=ipv4")
	var last map[string]float64
	if !testenv.Eventually(testenv.Patience, func() bool {
		last = scrapeProm(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
		return last[key] == 7
	}) {
		t.Fatalf("the Prometheus endpoint never served %s = 7; it served:\n%v", key, last)
	}
	if code := sc.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// service.instance.id is there without being set: the same across
// restarts, different in another network namespace (another pod), and the
// user's where OTEL_RESOURCE_ATTRIBUTES sets one. host.id is the machine-id.
func TestInstanceIdentity(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "ident0")
	run := func(env ...string) map[string]string {
		srv := otlptest.Start(t, "127.0.0.1:0")
		sc := startSidecar(t, append(otlpEnv(srv.Addr), env...), "--interfaces", p.Local, "--interval", "1s")
		waitValues(t, srv, attachedIs(1))
		res := resourceOf(t, srv)
		if code := sc.stop(t, syscall.SIGTERM); code != 0 {
			t.Fatalf("exit %d", code)
		}
		return res
	}
	first, again := run(), run()
	id := first["service.instance.id"]
	if _, err := uuid.Parse(id); err != nil || again["service.instance.id"] != id {
		t.Errorf("service.instance.id %q, then %q after a restart: want one UUID", id, again["service.instance.id"])
	}
	if machineID, err := os.ReadFile("/etc/machine-id"); err == nil {
		if got := first["host.id"]; got != strings.TrimSpace(string(machineID)) {
			t.Errorf("host.id %q, want the machine-id %q", got, strings.TrimSpace(string(machineID)))
		}
	}
	if mine := run("OTEL_RESOURCE_ATTRIBUTES=service.instance.id=edge-7"); mine["service.instance.id"] != "edge-7" {
		t.Errorf("service.instance.id %q, want the user's edge-7", mine["service.instance.id"])
	}

	// Another network namespace is another instance. It cannot reach this
	// namespace's OTLP endpoint: the console exporter prints the resource.
	other := testenv.NewNetns(t)
	var out syncBuffer
	err := testenv.RunIn(other, func() error {
		cmd := exec.Command(binary(t), "--interfaces", "none", "--interval", "1s")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "OTEL_METRICS_EXPORTER=console"}
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			return err
		}
		defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
		if !testenv.Eventually(testenv.Patience, func() bool { return strings.Contains(out.String(), "service.instance.id") }) {
			return fmt.Errorf("no service.instance.id on the console:\n%s", out.String())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`"Key":"service.instance.id","Value":\{"Type":"STRING","Value":"([^"]+)"`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no service.instance.id in the console output:\n%.2000s", out.String())
	}
	if m[1] == id {
		t.Errorf("another network namespace got the same service.instance.id %s", id)
	}
}

// Errors and drops come from the kernel's own interface statistics, per
// interface and direction, and exist from attach on: an idle interface is
// visible before it has counted a frame.
func TestErrorsAndDropsFromTheKernel(t *testing.T) {
	testenv.Privileged(t)
	srv := otlptest.Start(t, "127.0.0.1:0")
	p := testenv.NewPair(t, "drops0")
	startSidecar(t, otlpEnv(srv.Addr), "--interfaces", p.Local, "--interval", "1s")
	key := func(metric, dir string) string {
		return otlptest.Key(metric, "network.interface.name="+p.Local, "network.io.direction="+dir)
	}
	const errorsMetric, droppedMetric = "system.network.errors", "system.network.packet.dropped"
	idle := waitValues(t, srv, attachedIs(1))
	for _, dir := range []string{"receive", "transmit"} {
		for _, m := range []string{errorsMetric, droppedMetric} {
			if _, ok := idle[key(m, dir)]; !ok {
				t.Errorf("idle interface has no %s", key(m, dir))
			}
		}
		if n := otlptest.Totals(idle, packetsMetric, p.Local, dir); n != 0 {
			t.Errorf("idle interface counted %d %s packets", n, dir)
		}
	}

	// veth drops (and counts as tx_dropped) a frame larger than its
	// peer's MTU.
	p.SetPeerMTU(t, 1000)
	p.SendRawDropped(t, testenv.Cat(testenv.Eth(0x88b5), make([]byte, 1400)), 9)
	l, err := netlink.LinkByName(p.Local)
	if err != nil {
		t.Fatal(err)
	}
	st := l.Attrs().Statistics
	if st.TxDropped == 0 {
		t.Fatalf("the kernel dropped nothing: %+v", st)
	}
	waitValues(t, srv, func(v map[string]int64) bool {
		return v[key(droppedMetric, "transmit")] == int64(st.TxDropped) && v[key(droppedMetric, "receive")] == int64(st.RxDropped) &&
			v[key(errorsMetric, "transmit")] == int64(st.TxErrors) && v[key(errorsMetric, "receive")] == int64(st.RxErrors)
	})
}
