package main

import (
	encbin "encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/internal/otlptest"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// previousRelease is the sidecar of the previous release, whose pinned
// state this one takes over across a layout change (bpf.PreviousLayout):
// make previous-release builds it from the commit the Makefile records;
// EBPFNET_PREVIOUS_BINARY names it where there is no checkout (the 6.1 VM).
func previousRelease(t testing.TB) string {
	t.Helper()
	path := os.Getenv("EBPFNET_PREVIOUS_BINARY")
	if path == "" {
		path = "../../bin/ebpfnet-previous"
	}
	if _, err := os.Stat(path); err != nil {
		testenv.Missing(t, fmt.Sprintf("the previous release's sidecar (%v): run make previous-release", err))
	}
	return path
}

// removePins removes what the sidecar pinned under dir.
func removePins(t *testing.T, dir string) {
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
}

// A second process on a pin path in use exits 1 with one line naming the
// owner's PID; the owner goes on.
func TestSecondOwnerOfAPinPathIsRefused(t *testing.T) {
	testenv.Privileged(t)
	srv := otlptest.Start(t, "127.0.0.1:0")
	p := testenv.NewPair(t, "owner1")
	pin := "/sys/fs/bpf/ebpfnet-cmd-owner"
	removePins(t, pin)
	args := []string{"--interfaces", p.Local, "--pin-path", pin, "--interval", "1s"}
	first := startSidecar(t, otlpEnv(srv.Addr), args...)
	waitValues(t, srv, attachedIs(1))

	cmd := exec.Command(binary(t), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, otlpEnv(srv.Addr)...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	line := strings.TrimSpace(stderr.String())
	if code := cmd.ProcessState.ExitCode(); code != 1 || strings.Count(line, "\n") != 0 ||
		!strings.Contains(line, fmt.Sprintf("PID %d", first.cmd.Process.Pid)) || !strings.Contains(line, pin) {
		t.Errorf("second process: %v, exit %d, stderr:\n%s\nwant exit 1 and one line naming %s and PID %d", err, code, line, pin, first.cmd.Process.Pid)
	}

	p.SendUDP(t, false, true, 40, payload)
	waitValues(t, srv, func(v map[string]int64) bool {
		return otlptest.Totals(v, otlptest.PacketsMetric, p.Local, "receive") == 40
	})
	if code := first.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("owner exit %d, want 0", code)
	}
}

const payload = 100

// The previous release's pinned state (layout 3: no record of its network
// namespace) is taken over by this one mid-traffic: its hooks are found in
// this namespace, this build's programs are put on them in place, the
// state is rewritten in this layout, and the totals across the upgrade are
// exact.
func TestUpgradeInPlaceMidTraffic(t *testing.T) {
	testenv.Privileged(t)
	old := previousRelease(t)
	for _, mode := range []string{"tcx", "tc"} {
		t.Run(mode, func(t *testing.T) {
			testenv.RequireMode(t, mode)
			p := testenv.NewPair(t, "upgr"+mode)
			pin := "/sys/fs/bpf/ebpfnet-upgrade-" + mode
			removePins(t, pin)
			args := []string{"--interfaces", p.Local, "--attach", mode, "--pin-path", pin, "--interval", "1s"}
			testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
			kbase := testenv.LinkStats(t, p.Local)

			srv := otlptest.Start(t, "127.0.0.1:0")
			before := startCommand(t, otlpEnv(srv.Addr), old, args...)
			waitValues(t, srv, attachedIs(1))
			programs := func() map[string]uint32 {
				m := map[string]uint32{}
				for _, a := range testenv.AttachedPrograms(t, p.LocalIndex) {
					if strings.HasPrefix(a.Name, "ebpfnet") {
						m[a.Hook] = uint32(a.ID)
					}
				}
				return m
			}
			oldPrograms := programs()
			if len(oldPrograms) != 2 {
				t.Fatalf("the previous release attached %v, want a program on each of 2 hooks", oldPrograms)
			}
			if layout := pinnedLayout(t, pin); layout != bpf.PreviousLayout {
				t.Fatalf("the previous release pinned layout %d, want %d", layout, bpf.PreviousLayout)
			}
			if _, err := os.Stat(pin + "/meta"); err == nil {
				t.Fatal("the previous release pinned a meta map: it is not the layout this test upgrades from")
			}

			// Traffic in both directions all through the upgrade.
			stop, done := make(chan struct{}), make(chan error)
			go func() {
				for {
					select {
					case <-stop:
						done <- nil
						return
					default:
					}
					if err := p.TrySendUDP(false, true, 5, payload); err != nil {
						done <- err
						return
					}
					if err := p.TrySendUDP(false, false, 5, payload); err != nil {
						done <- err
						return
					}
				}
			}()
			waitValues(t, srv, func(v map[string]int64) bool {
				return otlptest.Totals(v, otlptest.PacketsMetric, p.Local, "receive") > 0
			})
			if code := before.stop(t, syscall.SIGTERM); code != 0 {
				t.Fatalf("old build exit %d", code)
			}
			srv2 := otlptest.Start(t, "127.0.0.1:0")
			after := startSidecar(t, otlpEnv(srv2.Addr), args...)
			waitValues(t, srv2, attachedIs(1))
			close(stop)
			if err := <-done; err != nil {
				t.Fatal(err)
			}

			// The same hooks, now running this process's programs, and
			// nothing else of ebpfnet's.
			newPrograms := programs()
			for hook, id := range oldPrograms {
				if newPrograms[hook] == 0 || newPrograms[hook] == id {
					t.Errorf("%s runs program %d after the upgrade, %d before: want this build's", hook, newPrograms[hook], id)
				}
			}
			if len(newPrograms) != len(oldPrograms) {
				t.Errorf("after the upgrade the hooks run %v, want one program of ebpfnet's on each of %d", newPrograms, len(oldPrograms))
			}
			if layout := pinnedLayout(t, pin); layout != bpf.Layout {
				t.Errorf("after the upgrade the rows say layout %d, want %d", layout, bpf.Layout)
			}
			k := testenv.LinkStats(t, p.Local).Sub(kbase)
			got := waitValues(t, srv2, func(v map[string]int64) bool {
				return otlptest.Totals(v, otlptest.PacketsMetric, p.Local, "receive") == int64(k.RxPackets) &&
					otlptest.Totals(v, otlptest.BytesMetric, p.Local, "receive") == int64(k.RxBytes) &&
					otlptest.Totals(v, otlptest.PacketsMetric, p.Local, "transmit") == int64(k.TxPackets) &&
					otlptest.Totals(v, otlptest.BytesMetric, p.Local, "transmit") == int64(k.TxBytes)
			})
			t.Logf("exact across the upgrade: %d frames received, %d sent",
				otlptest.Totals(got, otlptest.PacketsMetric, p.Local, "receive"), otlptest.Totals(got, otlptest.PacketsMetric, p.Local, "transmit"))
			if code := after.stop(t, syscall.SIGTERM); code != 0 {
				t.Errorf("new build exit %d", code)
			}
		})
	}
}

// pinnedLayout is the layout the used rows of the pinned interfaces map
// were written under, read as the raw bytes bpftool shows (byte 12 of a
// row, in every layout).
func pinnedLayout(t *testing.T, pin string) uint32 {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(pin+"/interfaces", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	row := make([]byte, m.ValueSize())
	for i := uint32(0); i < m.MaxEntries(); i++ {
		if err := m.Lookup(i, &row); err != nil {
			t.Fatal(err)
		}
		if encbin.NativeEndian.Uint32(row) != 0 {
			return encbin.NativeEndian.Uint32(row[12:])
		}
	}
	t.Fatal("no used row")
	return 0
}

// A pin path that would live only in the process's own mount namespace
// (here under unshare -m, where /sys/fs/bpf is not even mounted) is refused
// with one line saying what to do, instead of failing to make directories
// or vanishing with the process.
func TestPinPathInAPrivateMountNamespaceRefused(t *testing.T) {
	testenv.Privileged(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		testenv.Missing(t, "unshare (util-linux)")
	}
	p := testenv.NewPair(t, "private0")
	script := `umount /sys/fs/bpf && exec "$@"`
	cmd := exec.Command(unshare, "-m", "--propagation", "private", "sh", "-c", script, "sh",
		binary(t), "--interfaces", p.Local, "--pin-path", "/sys/fs/bpf/ebpfnet/node1")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "OTEL_METRICS_EXPORTER=none"}
	out, _ := cmd.CombinedOutput()
	line := strings.TrimSpace(string(out))
	if code := cmd.ProcessState.ExitCode(); code != 1 || strings.Count(line, "\n") != 0 ||
		!strings.Contains(line, "mount namespace of its own") || !strings.Contains(line, "mount the host's BPF filesystem there") {
		t.Errorf("exit %d, output:\n%s\nwant exit 1 and one line saying to mount the host's BPF filesystem", code, line)
	}
	if got := testenv.Attachments(t, p.LocalIndex); len(got) != 0 {
		t.Errorf("attached %v", got)
	}
}

// startOf returns the one start time of iface's cumulative points in md,
// failing if they have more than one, or none.
func startOf(t *testing.T, md pmetric.Metrics, iface string) time.Time {
	t.Helper()
	starts := map[time.Time]bool{}
	for _, m := range otlptest.Metrics(md) {
		if m.Name() != otlptest.PacketsMetric && m.Name() != otlptest.BytesMetric {
			continue
		}
		points := m.Sum().DataPoints()
		for i := range points.Len() {
			if v, ok := points.At(i).Attributes().Get("network.interface.name"); ok && v.AsString() == iface {
				starts[points.At(i).StartTimestamp().AsTime()] = true
			}
		}
	}
	if len(starts) != 1 {
		t.Fatalf("%s's points have start times %v, want one", iface, starts)
	}
	for s := range starts {
		return s
	}
	return time.Time{}
}

// latestWith waits for an export in which iface's received packets are n.
func latestWith(t *testing.T, srv *otlptest.Server, iface string, n int64) pmetric.Metrics {
	t.Helper()
	waitValues(t, srv, func(v map[string]int64) bool {
		return otlptest.Totals(v, otlptest.PacketsMetric, iface, "receive") == n
	})
	md, _ := srv.Latest()
	return md
}

// Each interface's cumulative points carry its own start time: its first
// attach, kept across a restart over pinned state, and a new one when the
// interface is created again under the same name (its count starting over).
func TestStartTimesPerInterface(t *testing.T) {
	testenv.Privileged(t)
	pin := "/sys/fs/bpf/ebpfnet-start"
	removePins(t, pin)
	args := []string{"--interfaces", "start0", "--pin-path", pin, "--interval", "1s"}
	p := testenv.NewPair(t, "start0")

	srv := otlptest.Start(t, "127.0.0.1:0")
	first := startSidecar(t, otlpEnv(srv.Addr), args...)
	waitValues(t, srv, attachedIs(1))
	p.SendUDP(t, false, true, 10, payload)
	attached := startOf(t, latestWith(t, srv, p.Local, 10), p.Local)
	if code := first.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d", code)
	}

	// A restart over the pins: the same start, though the process is new.
	restarted := time.Now()
	srv2 := otlptest.Start(t, "127.0.0.1:0")
	second := startSidecar(t, otlpEnv(srv2.Addr), args...)
	p.SendUDP(t, false, true, 5, payload)
	if got := startOf(t, latestWith(t, srv2, p.Local, 15), p.Local); !got.Equal(attached) || !got.Before(restarted) {
		t.Errorf("start after the restart %v, want the first attach's %v", got, attached)
	}

	// The interface created again under the same name: a new series.
	p.Close()
	waitValues(t, srv2, attachedIs(0))
	q := testenv.NewPair(t, "start0")
	waitValues(t, srv2, attachedIs(1))
	q.SendUDP(t, false, true, 3, payload)
	if got := startOf(t, latestWith(t, srv2, q.Local, 3), q.Local); !got.After(attached) || !got.After(restarted) {
		t.Errorf("start of the re-created interface %v, want one after the first's %v and the restart", got, attached)
	}
	if code := second.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// Pinned state belongs to the network namespace it was made in: an ifindex
// names another interface in another namespace (every container's eth0 is
// 2). A sidecar in another namespace is refused with one line while the
// first namespace's hooks are attached, and starts over once they are gone.
func TestPinPathOfAnotherNetnsRefused(t *testing.T) {
	testenv.Privileged(t)
	// With links (tcx, or XDP where the kernel has no tcx) the state's hooks
	// can be seen gone from here; tc filters of another namespace cannot,
	// and stay refused (a unit test in internal/attach covers that).
	mode := "tcx"
	if !testenv.HasTCX() {
		mode = "xdp"
	}
	pin := "/sys/fs/bpf/ebpfnet-netns"
	removePins(t, pin)
	nsA, nsB := testenv.NewNetns(t), testenv.NewNetns(t)
	// In each, a veth of the same name, which gets the same ifindex.
	var a, b *testenv.Pair
	mustDo := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustDo(testenv.RunIn(nsA, func() (err error) { a, err = testenv.CreatePair("samename0"); return err }))
	mustDo(testenv.RunIn(nsB, func() (err error) { b, err = testenv.CreatePair("samename0"); return err }))
	t.Cleanup(func() { a.PeerNS.Close(); b.PeerNS.Close() })
	if a.LocalIndex != b.LocalIndex {
		t.Fatalf("ifindexes %d and %d: the test wants them equal", a.LocalIndex, b.LocalIndex)
	}
	args := []string{"--interfaces", "samename0", "--attach", mode, "--pin-path", pin}
	env := []string{"OTEL_METRICS_EXPORTER=none"}
	run := func(ns netns.NsHandle) *sidecar {
		var s *sidecar
		mustDo(testenv.RunIn(ns, func() error { s = startCommand(t, env, binary(t), args...); return nil }))
		return s
	}

	first := run(nsA)
	testenv.WaitFor(t, "the first sidecar to count", first.started)
	if code := first.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("first sidecar exit %d", code)
	}

	second := run(nsB)
	select {
	case <-second.done:
		second.done <- nil
	case <-time.After(testenv.Patience):
		t.Fatal("the sidecar in the other namespace started")
	}
	line := strings.TrimSpace(second.stderr.String())
	if code := second.cmd.ProcessState.ExitCode(); code != 1 || strings.Count(line, "\n") != 0 ||
		!strings.Contains(line, "pinned state of another network namespace") || !strings.Contains(line, "samename0 (ifindex") {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and one line naming the other namespace's hooks", code, line)
	}
	mustDo(testenv.RunIn(nsB, func() error {
		if got := testenv.Attachments(t, b.LocalIndex); len(got) != 0 {
			return fmt.Errorf("attached in the second namespace: %v", got)
		}
		return nil
	}))

	// The first namespace's interface goes, and its links with it: the
	// state is started over, and the second namespace's interface counted.
	mustDo(testenv.RunIn(nsA, func() error {
		l, err := netlink.LinkByName("samename0")
		if err != nil {
			return err
		}
		return netlink.LinkDel(l)
	}))
	third := run(nsB)
	testenv.WaitFor(t, "the sidecar to start over", third.started)
	if !strings.Contains(third.stderr.String(), "starting over") {
		t.Errorf("no line said the state was started over:\n%s", third.stderr.String())
	}
	mustDo(testenv.RunIn(nsB, func() error {
		if got := testenv.Attachments(t, b.LocalIndex); len(got) == 0 {
			return fmt.Errorf("nothing attached in the second namespace")
		}
		return nil
	}))
	if code := third.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
}
