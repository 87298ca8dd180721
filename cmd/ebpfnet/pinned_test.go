package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/internal/otlptest"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// variantBinary builds the sidecar with -tags ebpfnet_variant, whose
// programs differ from the real ones by one instruction (bpf/variant_upgrade.go),
// or takes the one EBPFNET_VARIANT_BINARY names (the 6.1 VM).
func variantBinary(t testing.TB) string {
	return buildSidecar(t, "EBPFNET_VARIANT_BINARY", "ebpfnet_variant")
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

// A newer build adopting pinned state puts its programs on the existing
// hooks in place, mid-traffic: the totals across the upgrade are exact and
// the programs attached afterwards are the new build's.
func TestUpgradeInPlaceMidTraffic(t *testing.T) {
	testenv.Privileged(t)
	old := variantBinary(t)
	// The programs of this (real) build, as the new sidecar loads them.
	objs, err := bpf.Load(bpf.Options{MaxInterfaces: 1, Programs: []string{bpf.ProgramIngress, bpf.ProgramEgress}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, name := range []string{bpf.ProgramIngress, bpf.ProgramEgress} {
		info, err := objs.Program(name).Info()
		if err != nil {
			t.Fatal(err)
		}
		want[info.Name] = info.Tag
	}
	objs.Close()

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
			tags := func() map[string]string {
				m := map[string]string{}
				for _, a := range testenv.AttachedPrograms(t, p.LocalIndex) {
					if strings.HasPrefix(a.Name, "ebpfnet") {
						m[a.Name] = a.Tag
					}
				}
				return m
			}
			variant := tags()
			for name, tag := range want {
				if variant[name] == "" || variant[name] == tag {
					t.Fatalf("variant build's %s has tag %q, the real one %q: want a different program", name, variant[name], tag)
				}
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

			if got := tags(); len(got) != len(want) || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("after the upgrade the hooks run %v, want the new build's %v (and nothing else of ebpfnet's)", got, want)
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
