//go:build linux

package cri

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
	"github.com/vishvananda/netlink"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Exec runs cmd in the pod's busybox container (PATH=/bin, where every
// busybox applet is) and returns its standard output. A non-zero exit
// fails t.
func (p *Pod) Exec(t testing.TB, cmd ...string) string {
	t.Helper()
	out, err := p.TryExec(cmd...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TryExec is Exec for goroutines other than the test's: a non-zero exit is
// an error, which carries the command's standard error.
func (p *Pod) TryExec(cmd ...string) (string, error) {
	ctx, cancel := rpcContext()
	defer cancel()
	resp, err := p.h.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: p.ContainerID, Cmd: cmd})
	if err != nil {
		return "", fmt.Errorf("pod %s: exec %q: %w", p.Name, cmd, err)
	}
	if resp.ExitCode != 0 {
		return string(resp.Stdout), fmt.Errorf("pod %s: %q exited %d\nstdout: %s\nstderr: %s", p.Name, cmd, resp.ExitCode, resp.Stdout, resp.Stderr)
	}
	return string(resp.Stdout), nil
}

// Ping sends n echo requests from the pod to ip, 0.2 s apart, and fails t
// unless every one is answered.
func (p *Pod) Ping(t testing.TB, ip net.IP, n int) {
	t.Helper()
	out := p.Exec(t, "ping", "-c", strconv.Itoa(n), "-i", "0.2", "-W", "5", ip.String())
	want := fmt.Sprintf("%d packets transmitted, %d packets received", n, n)
	if !strings.Contains(out, want) {
		t.Fatalf("pod %s: ping %s: want %q in:\n%s", p.Name, ip, want, out)
	}
}

// Stats reads the counters of the pod's own eth0, inside its network
// namespace.
func (p *Pod) Stats(t testing.TB) testenv.Stats {
	t.Helper()
	var s testenv.Stats
	if err := p.inNetns(func(nh *netlink.Handle) error {
		l, err := nh.LinkByName("eth0")
		if err != nil {
			return err
		}
		st := l.Attrs().Statistics
		s = testenv.Stats{RxPackets: st.RxPackets, RxBytes: st.RxBytes, TxPackets: st.TxPackets, TxBytes: st.TxBytes}
		return nil
	}); err != nil {
		t.Fatalf("pod %s: eth0's counters: %v", p.Name, err)
	}
	return s
}

// SNMP reads the pod's protocol counters from /proc/net/snmp, inside the
// pod, keyed "Ip.InReceives", "Ip.OutRequests", "IcmpMsg.OutType8" (echo
// requests sent), "IcmpMsg.InType0" (echo replies received), and so on.
// They count what the pod's own stack did, packet by packet, so they are
// exact where interface counters also carry ARP.
func (p *Pod) SNMP(t testing.TB) map[string]uint64 {
	t.Helper()
	out := p.Exec(t, "cat", "/proc/net/snmp")
	m := map[string]uint64{}
	names := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		proto, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if names[proto] == nil { // the header line comes first
			names[proto] = f
			continue
		}
		for i, v := range f {
			if i >= len(names[proto]) {
				break
			}
			if n, err := strconv.ParseUint(v, 10, 64); err == nil { // Ip.Forwarding et al. may be signed
				m[proto+"."+names[proto][i]] = n
			}
		}
	}
	return m
}
