package datapath

import (
	"fmt"
	"os"
	"testing"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
	"github.com/ebpfnet/ebpfnet/internal/testenv/cri"
)

// podsConfig counts the pods' host veths, named by their pods from the
// harness's CNI cache.
func podsConfig(h *cri.Harness) config.Config {
	cfg := cfgFor(config.AttachAuto, "veth*")
	on := true
	cfg.Pods = config.Pods{Enabled: &on, CNICacheDir: h.CNICacheDir()}
	return cfg
}

// podIn returns the snapshot's interface of p's host veth, if it is named
// by p.
func podIn(s *snapshot.Snapshot, p *cri.Pod) *snapshot.Interface {
	for i := range s.Interfaces {
		if in := &s.Interfaces[i]; in.Index == p.HostVethIndex && in.Pod != nil && in.Pod.UID == p.UID {
			return in
		}
	}
	return nil
}

// Real pods, made by containerd through CRI as a kubelet makes them, on
// the CNI bridge plugin: each host veth is named by its pod (namespace,
// name, UID, and the pod's own interface), and counts exactly what the
// pod's own eth0 counted, directions turned round: what the pod sent
// (its eth0's tx) is what its veth received.
func TestPodsCountedExactly(t *testing.T) {
	testenv.Privileged(t)
	h := cri.Start(t)
	d := open(t, podsConfig(h))
	a, b := h.RunPod(t, "shop", "cart"), h.RunPod(t, "db", "pg")
	testenv.WaitFor(t, "both pods named", func() bool {
		s := snap(t, d)
		return podIn(s, a) != nil && podIn(s, b) != nil
	})
	s := snap(t, d)
	if p := podIn(s, a).Pod; p.Name != "cart" || p.Namespace != "shop" || p.Interface != "eth0" {
		t.Errorf("pod a named %+v", p)
	}

	base := map[*cri.Pod]bpf.Counters{a: podIn(s, a).Counters, b: podIn(s, b).Counters}
	kbase := map[*cri.Pod]testenv.Stats{a: a.Stats(t), b: b.Stats(t)}
	a.Ping(t, b.IP, 20)        // pod to pod
	a.Ping(t, cri.Gateway, 10) // pod to the host side
	b.Ping(t, cri.Gateway, 5)
	exact := func(p *cri.Pod) bool {
		in := podIn(snap(t, d), p)
		if in == nil {
			return false
		}
		got, k := sub(in.Counters, base[p]), p.Stats(t).Sub(kbase[p])
		// The pod's view: its eth0 sent what its veth received.
		return got.Total(bpf.Receive) == bpf.Count{Packets: k.TxPackets, Bytes: k.TxBytes} &&
			got.Total(bpf.Transmit) == bpf.Count{Packets: k.RxPackets, Bytes: k.RxBytes} && k.TxPackets >= 25
	}
	if !testenv.Eventually(testenv.Patience, func() bool { return exact(a) && exact(b) }) {
		for _, p := range []*cri.Pod{a, b} {
			in := podIn(snap(t, d), p)
			got, k := sub(in.Counters, base[p]), p.Stats(t).Sub(kbase[p])
			t.Errorf("%s: veth received %+v, sent %+v; eth0 %+v", p.Name, got.Total(bpf.Receive), got.Total(bpf.Transmit), k)
		}
		t.FailNow()
	}

	// A pod deleted: its series end. Made again under the same name: a new
	// UID, a new veth, counting from a new start.
	start := podIn(snap(t, d), b).Start
	h.RemovePod(t, b)
	testenv.WaitFor(t, "the deleted pod to leave the snapshot", func() bool {
		for _, in := range snap(t, d).Interfaces {
			if in.Pod != nil && in.Pod.UID == b.UID {
				return false
			}
		}
		return true
	})
	again := h.RunPod(t, "db", "pg")
	testenv.WaitFor(t, "the pod made again to be named", func() bool { return podIn(snap(t, d), again) != nil })
	if in := podIn(snap(t, d), again); in.Pod.UID == b.UID || !in.Start.After(start) {
		t.Errorf("made again: uid %s (was %s), start %v (was %v)", in.Pod.UID, b.UID, in.Start, start)
	}
}

// 50 pods made at once, as a node gets them when a deployment scales: each
// is named by its own pod.
func TestFiftyPodsAtOnce(t *testing.T) {
	testenv.Privileged(t)
	h := cri.Start(t)
	d := open(t, podsConfig(h))
	names := make([]string, 50)
	for i := range names {
		names[i] = fmt.Sprintf("burst-%02d", i)
	}
	ps := h.RunPods(t, "load", names)
	testenv.WaitFor(t, "all 50 pods named", func() bool {
		s := snap(t, d)
		for _, p := range ps {
			if in := podIn(s, p); in == nil || in.Pod.Name != p.Name {
				return false
			}
		}
		return true
	})
}

// A pod as the CNI cache describes it, with no runtime: a result naming the
// peer's namespace (a path to it) and the pod's interface there, and the
// kubelet's arguments. This runs wherever the kernel tests run, the 6.1 VM
// included, and shows the kernel's side of the naming there: the peer's
// namespace id (RTM_GETNSID) and its interfaces read without entering it
// (IFLA_TARGET_NETNSID).
func TestPodFromTheCacheOnTheKernel(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "cache0")
	dir := t.TempDir()
	cfg := cfgFor(config.AttachAuto, p.Local)
	on := true
	cfg.Pods = config.Pods{Enabled: &on, CNICacheDir: dir}
	d := open(t, cfg)
	// Written after the start: the watch sees it.
	file := testenv.CNIPod(t, dir, p, "shop", "cart", "0b5e55ed")
	named := func() *snapshot.Interface {
		for _, in := range snap(t, d).Interfaces {
			if in.Index == p.LocalIndex && in.Pod != nil {
				return &in
			}
		}
		return nil
	}
	testenv.WaitFor(t, "the veth named by its pod", func() bool { return named() != nil })
	if got := *named().Pod; got.Namespace != "shop" || got.Name != "cart" || got.UID != "0b5e55ed" || got.Interface != p.Peer {
		t.Errorf("named %+v", got)
	}
	base, kbase := named().Counters, testenv.LinkStats(t, p.Local)
	p.SendUDP(t, false, true, 40, 64)
	p.Ping(t, 5, 64)
	testenv.WaitFor(t, "the pod's veth counting what the kernel counted", func() bool {
		got, k := sub(named().Counters, base), testenv.LinkStats(t, p.Local).Sub(kbase)
		return got.Total(bpf.Receive) == bpf.Count{Packets: k.RxPackets, Bytes: k.RxBytes} &&
			got.Total(bpf.Transmit) == bpf.Count{Packets: k.TxPackets, Bytes: k.TxBytes} && k.RxPackets >= 45
	})

	// The result removed (the pod deleted): the veth is no pod's.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the veth no longer named", func() bool { return named() == nil })
}
