package cri

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
	"github.com/vishvananda/netlink"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// cacheFile is what the tests read of a libcni cache file.
type cacheFile struct {
	Kind        string      `json:"kind"`
	ContainerID string      `json:"containerId"`
	NetworkName string      `json:"networkName"`
	IfName      string      `json:"ifName"`
	CNIArgs     [][2]string `json:"cniArgs"`
	Result      struct {
		Interfaces []struct {
			Name    string `json:"name"`
			Sandbox string `json:"sandbox"`
		} `json:"interfaces"`
	} `json:"result"`
}

func readCache(t *testing.T, path string) cacheFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("CNI cache file: %v", err)
	}
	var c cacheFile
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
	return c
}

// checkPod checks what the feature under test will read of a pod: its host
// veth, in the test's namespace, on the bridge, with a link netnsid, and
// its CNI cache file, naming the pod and both ends.
func checkPod(t *testing.T, h *Harness, p *Pod) {
	t.Helper()
	l, err := netlink.LinkByName(p.HostVeth)
	if err != nil {
		t.Fatalf("pod %s: host veth: %v", p.Name, err)
	}
	if l.Attrs().Index != p.HostVethIndex || l.Type() != "veth" {
		t.Errorf("pod %s: %s is a %s of index %d, want a veth of index %d", p.Name, p.HostVeth, l.Type(), l.Attrs().Index, p.HostVethIndex)
	}
	if l.Attrs().NetNsID < 0 {
		t.Errorf("pod %s: %s has no link netnsid", p.Name, p.HostVeth)
	}
	path := h.CNICacheFile(p)
	if filepath.Dir(path) != filepath.Join(h.CNICacheDir(), "results") {
		t.Errorf("cache file %s is not in %s/results", path, h.CNICacheDir())
	}
	c := readCache(t, path)
	args := map[string]string{}
	for _, kv := range c.CNIArgs {
		args[kv[0]] = kv[1]
	}
	want := map[string]string{
		"K8S_POD_NAMESPACE":          p.Namespace,
		"K8S_POD_NAME":               p.Name,
		"K8S_POD_UID":                p.UID,
		"K8S_POD_INFRA_CONTAINER_ID": p.SandboxID,
	}
	for k, v := range want {
		if args[k] != v {
			t.Errorf("pod %s: cache cniArgs %s = %q, want %q", p.Name, k, args[k], v)
		}
	}
	if c.Kind != "cniCacheV1" || c.ContainerID != p.SandboxID || c.NetworkName != h.NetworkName() || c.IfName != "eth0" {
		t.Errorf("pod %s: cache file says kind %q container %q network %q if %q", p.Name, c.Kind, c.ContainerID, c.NetworkName, c.IfName)
	}
	var host, pod bool
	for _, i := range c.Result.Interfaces {
		host = host || i.Name == p.HostVeth && i.Sandbox == ""
		pod = pod || i.Name == "eth0" && i.Sandbox == p.NetnsPath
	}
	if !host || !pod {
		t.Errorf("pod %s: cache result's interfaces %+v lack host %s or eth0 in %s", p.Name, c.Result.Interfaces, p.HostVeth, p.NetnsPath)
	}
}

func TestTwoPods(t *testing.T) {
	h := Start(t)
	a := h.RunPod(t, "default", "pod-a")
	b := h.RunPod(t, "default", "pod-b")
	for _, p := range []*Pod{a, b} {
		t.Logf("pod %s/%s uid %s sandbox %.12s ip %s veth %s (%d) netns %s pause %d eth0 %+v",
			p.Namespace, p.Name, p.UID, p.SandboxID, p.IP, p.HostVeth, p.HostVethIndex, p.NetnsPath, p.PausePID, p.Stats(t))
		checkPod(t, h, p)
		// The pause process is in the pod's cgroup.
		cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.PausePID))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(cg), p.CgroupParent+"/") {
			t.Errorf("pod %s: pause %d is not under %s:\n%s", p.Name, p.PausePID, p.CgroupParent, cg)
		}
	}
	if a.HostVeth == b.HostVeth || a.IP.Equal(b.IP) {
		t.Fatalf("two pods share veth %s or address %s", a.HostVeth, a.IP)
	}

	const n = 5
	aBefore, bBefore := a.Stats(t), b.Stats(t)
	vethBefore := testenv.LinkStats(t, a.HostVeth)
	aSNMP, bSNMP := a.SNMP(t), b.SNMP(t)
	a.Ping(t, b.IP, n)
	aDelta, bDelta := a.Stats(t).Sub(aBefore), b.Stats(t).Sub(bBefore)
	vethDelta := testenv.LinkStats(t, a.HostVeth).Sub(vethBefore)
	aSNMP2, bSNMP2 := a.SNMP(t), b.SNMP(t)
	// Exact: the pods' stacks count the echo messages alone (the network
	// is IPv4 only, and ARP is no IP).
	for _, c := range []struct {
		pod, counter string
		before, now  map[string]uint64
	}{
		{"a", "IcmpMsg.OutType8", aSNMP, aSNMP2}, {"a", "IcmpMsg.InType0", aSNMP, aSNMP2},
		{"a", "Ip.OutRequests", aSNMP, aSNMP2}, {"a", "Ip.InReceives", aSNMP, aSNMP2},
		{"b", "IcmpMsg.InType8", bSNMP, bSNMP2}, {"b", "IcmpMsg.OutType0", bSNMP, bSNMP2},
		{"b", "Ip.OutRequests", bSNMP, bSNMP2}, {"b", "Ip.InReceives", bSNMP, bSNMP2},
	} {
		if d := c.now[c.counter] - c.before[c.counter]; d != n {
			t.Errorf("pod %s: %s went up by %d, want %d", c.pod, c.counter, d, n)
		}
	}
	// At least: the interfaces also carry the ARP that the ping needed,
	// and a neighbour's later probe.
	if aDelta.TxPackets < n || aDelta.RxPackets < n || bDelta.TxPackets < n || bDelta.RxPackets < n {
		t.Errorf("eth0 counters: a %+v, b %+v; want at least %d packets each way", aDelta, bDelta, n)
	}
	if vethDelta.RxPackets < n || vethDelta.TxPackets < n {
		t.Errorf("host veth %s: %+v; want at least %d packets each way", a.HostVeth, vethDelta, n)
	}
	// Exact: the host veth counts what the pod's eth0 does, mirrored,
	// seen at one moment (two equal readings around the pod's).
	testenv.WaitFor(t, "a consistent reading of pod a's veth pair", func() bool {
		host := testenv.LinkStats(t, a.HostVeth)
		pod := a.Stats(t)
		if testenv.LinkStats(t, a.HostVeth) != host {
			return false
		}
		if want := (testenv.Stats{RxPackets: pod.TxPackets, RxBytes: pod.TxBytes, TxPackets: pod.RxPackets, TxBytes: pod.RxBytes}); host != want {
			t.Fatalf("host veth %s counts %+v, pod a's eth0 %+v: not mirrored", a.HostVeth, host, pod)
		}
		return true
	})
	// The pods reach the test's namespace at the bridge.
	b.Ping(t, Gateway, 1)

	h.RemovePod(t, a)
	testenv.WaitFor(t, "pod a's cache file to go", func() bool {
		_, err := os.Stat(h.CNICacheFile(a))
		return os.IsNotExist(err)
	})
	for _, root := range cgroupRoots() {
		if _, err := os.Stat(filepath.Join(root, a.CgroupParent)); !os.IsNotExist(err) {
			t.Errorf("pod a's cgroup %s%s is still there (%v)", root, a.CgroupParent, err)
		}
	}
	// Pod b is untouched.
	checkPod(t, h, b)
	b.Ping(t, Gateway, 1)
}

func TestFiftyPodsAtOnce(t *testing.T) {
	h := Start(t)
	names := make([]string, 50)
	for i := range names {
		names[i] = fmt.Sprintf("pod-%02d", i)
	}
	start := time.Now()
	pods := h.RunPods(t, "default", names)
	t.Logf("%d pods ready in %v", len(pods), time.Since(start).Round(time.Millisecond))
	veths, ips := map[string]bool{}, map[string]bool{}
	for _, p := range pods {
		checkPod(t, h, p)
		veths[p.HostVeth], ips[p.IP.String()] = true, true
	}
	if len(veths) != len(pods) || len(ips) != len(pods) {
		t.Errorf("%d pods have %d veths and %d addresses", len(pods), len(veths), len(ips))
	}
	entries, err := os.ReadDir(filepath.Join(h.CNICacheDir(), "results"))
	if err != nil {
		t.Fatal(err)
	}
	prefix := h.NetworkName() + "-"
	var caches int
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			caches++
		}
	}
	if caches != len(pods) {
		t.Errorf("%d cache files of network %s, want %d", caches, h.NetworkName(), len(pods))
	}

	start = time.Now()
	h.RemovePods(t, pods)
	t.Logf("%d pods removed in %v", len(pods), time.Since(start).Round(time.Millisecond))
	testenv.WaitFor(t, "the cache files to go", func() bool {
		entries, err := os.ReadDir(filepath.Join(h.CNICacheDir(), "results"))
		if err != nil {
			return false
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) {
				return false
			}
		}
		return true
	})
}
