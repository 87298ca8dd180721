package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/internal/otlptest"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

const twoCaps = uint64(1)<<unix.CAP_BPF | 1<<unix.CAP_NET_ADMIN

// capsOf reads the capability sets and no_new_privs of a running process.
func capsOf(t *testing.T, pid int) map[string]uint64 {
	t.Helper()
	got := map[string]uint64{}
	for _, set := range []string{"CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb", "NoNewPrivs"} {
		v, err := testenv.ProcessCapabilities(pid, set)
		if err != nil {
			t.Fatal(err)
		}
		got[set] = v
	}
	return got
}

// Started as root, the sidecar keeps CAP_BPF and CAP_NET_ADMIN alone once
// it has attached, and those are enough for an interface that appears
// afterwards.
func TestKeepsOnlyCapBPFAndNetAdmin(t *testing.T) {
	testenv.Privileged(t)
	srv := otlptest.Start(t, "127.0.0.1:0")
	first := testenv.NewPair(t, "capa0")
	sc := startSidecar(t, otlpEnv(srv.Addr), "--interfaces", "capa*", "--interval", "1s")
	waitValues(t, srv, attachedIs(1))

	want := map[string]uint64{"CapEff": twoCaps, "CapPrm": twoCaps, "CapInh": 0, "CapBnd": twoCaps, "CapAmb": 0, "NoNewPrivs": 1}
	if got := capsOf(t, sc.cmd.Process.Pid); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("capabilities after start: %x, want %x", got, want)
	}

	// A new interface, attached with what is left, counts exactly. (The
	// first goes first: test pairs share their addresses.)
	l, err := netlink.LinkByName(first.Local)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	waitValues(t, srv, attachedIs(0))
	second := testenv.NewPair(t, "capa1")
	waitValues(t, srv, attachedIs(1))
	// The pair is silent (NOARP, static neighbours): all it carries from
	// here on is what the test sends.
	testenv.WaitQuiet(t, second.Local, 300*time.Millisecond)
	kbase := testenv.LinkStats(t, second.Local)
	sent := otlptest.SendKnown(t, second)
	waitValues(t, srv, func(v map[string]int64) bool {
		return otlptest.Matches(v, second.Local, sent, testenv.LinkStats(t, second.Local).Sub(kbase))
	})
	if code := sc.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
	requireDetached(t, second)
}

// Run as nobody with CAP_BPF and CAP_NET_ADMIN alone (what README and the
// systemd unit give it), the sidecar loads, attaches and counts exactly.
func TestRunsAsNobodyWithCapBPFAndNetAdmin(t *testing.T) {
	testenv.Privileged(t)
	p := countsUnderSetpriv(t, "nobody0", "-all,+bpf,+net_admin", nil)
	requireDetached(t, p)
}

// countsUnderSetpriv runs the sidecar on a fresh pair as uid 65534 under
// setpriv, with caps as its inheritable, ambient and bounding sets (and the
// extra setpriv flags and sidecar arguments given), checks that it holds
// exactly CAP_BPF and CAP_NET_ADMIN, and that it counts exactly; it returns
// the pair once the sidecar has exited 0.
func countsUnderSetpriv(t *testing.T, name, caps string, setprivFlags []string, args ...string) *testenv.Pair {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		testenv.Missing(t, "setpriv (util-linux)")
	}
	srv := otlptest.Start(t, "127.0.0.1:0")
	p := testenv.NewPair(t, name)
	testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
	kbase := testenv.LinkStats(t, p.Local)

	cmd := append([]string{"--reuid", "65534", "--regid", "65534", "--clear-groups",
		"--inh-caps", caps, "--ambient-caps", caps, "--bounding-set", caps}, setprivFlags...)
	cmd = append(cmd, binary(t))
	cmd = append(cmd, args...)
	sc := startCommand(t, otlpEnv(srv.Addr), setpriv, append(cmd, "--interfaces", p.Local, "--interval", "1s")...)
	waitValues(t, srv, attachedIs(1))
	got := capsOf(t, sc.cmd.Process.Pid)
	if got["CapEff"] != twoCaps || got["CapPrm"] != twoCaps || got["CapBnd"] != twoCaps {
		t.Errorf("effective %x, permitted %x, bounding %x: want exactly CAP_BPF and CAP_NET_ADMIN (%x)", got["CapEff"], got["CapPrm"], got["CapBnd"], twoCaps)
	}
	if uid := statusField(t, sc.cmd.Process.Pid, "Uid"); uid != "65534" {
		t.Errorf("running as uid %s, want 65534", uid)
	}
	if nnp := statusField(t, sc.cmd.Process.Pid, "NoNewPrivs"); nnp != "1" {
		// The sidecar sets no_new_privs itself once started.
		t.Errorf("NoNewPrivs %s, want 1", nnp)
	}

	sent := otlptest.SendKnown(t, p)
	waitValues(t, srv, func(v map[string]int64) bool {
		return otlptest.Matches(v, p.Local, sent, testenv.LinkStats(t, p.Local).Sub(kbase))
	})
	if code := sc.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
	return p
}

// statusField is the first value of a /proc/PID/status line.
func statusField(t *testing.T, pid int, field string) string {
	t.Helper()
	v, err := testenv.StatusField(pid, field)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(v)[0]
}

// Built with cgo (as the race build is), the sidecar drops every other
// capability from every thread too: libcap's psx reaches the threads cgo
// made as well as Go's.
func TestBuiltWithCgoDropsCapabilitiesToo(t *testing.T) {
	testenv.Privileged(t)
	if _, err := exec.LookPath("gcc"); err != nil {
		testenv.Missing(t, "no C compiler (gcc): go build cannot use cgo here")
	}
	bin := filepath.Join(t.TempDir(), "ebpfnet-cgo")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build with cgo: %v\n%s", err, out)
	}
	srv := otlptest.Start(t, "127.0.0.1:0")
	p := testenv.NewPair(t, "cgo0")
	sc := startCommand(t, otlpEnv(srv.Addr), bin, "--interfaces", p.Local, "--interval", "1s")
	waitValues(t, srv, attachedIs(1))
	want := map[string]uint64{"CapEff": twoCaps, "CapPrm": twoCaps, "CapInh": 0, "CapBnd": twoCaps, "CapAmb": 0, "NoNewPrivs": 1}
	// Every thread, not only the main one.
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", sc.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		got := map[string]uint64{}
		for set := range want {
			v, err := testenv.StatusCapabilities(fmt.Sprintf("/proc/%d/task/%s/status", sc.cmd.Process.Pid, task.Name()), set)
			if err != nil {
				t.Fatal(err)
			}
			got[set] = v
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("thread %s: %x, want %x", task.Name(), got, want)
		}
	}
	if code := sc.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
}
