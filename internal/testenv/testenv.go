//go:build linux

// Package testenv runs ebpfnet's kernel tests where they cannot harm the
// machine: in network namespaces the tests create, on veth pairs the tests
// create, with addresses from the documentation ranges.
//
// Main re-executes the test binary in a new network and mount namespace, so
// that nothing a test attaches can reach the machine's own interfaces, and
// everything it created disappears with the process.
package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// EnvPrivileged set to "require" turns a missing privilege into a failure.
const EnvPrivileged = "EBPFNET_PRIVILEGED"

const envIsolated = "EBPFNET_TEST_ISOLATED"

// Main runs the tests of a package with kernel tests. As root, it runs them
// in a child process born in a new network namespace (only lo in it) and a
// private mount namespace with its own /sys and BPF filesystem.
func Main(m *testing.M) {
	if os.Geteuid() != 0 {
		os.Exit(m.Run())
	}
	os.Exit(RunIsolated(m.Run))
}

// RunIsolated runs fn in a child process born in a new network namespace
// and a private mount namespace (see Main), and returns its exit code. The
// benchmarks use it too.
func RunIsolated(fn func() int) int {
	if os.Getenv(envIsolated) == "" {
		return reexecIsolated()
	}
	// Processes started from here (go test -fuzz workers) inherit the
	// namespaces and mounts.
	if os.Getenv(envIsolated) == "new" {
		if err := setupIsolated(); err != nil {
			fmt.Fprintln(os.Stderr, "testenv:", err)
			return 1
		}
		os.Setenv(envIsolated, "ready")
	}
	return fn()
}

func reexecIsolated() int {
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), envIsolated+"=new")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:   unix.CLONE_NEWNET | unix.CLONE_NEWNS,
		Unshareflags: unix.CLONE_NEWNS, // makes the mount tree private
		Pdeathsig:    syscall.SIGKILL,
	}
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv: run tests in a new network namespace:", err)
		return 1
	}
	return 0
}

func setupIsolated() error {
	// The cgroup filesystems under /sys/fs/cgroup, which the new /sys hides
	// and a container runtime (the image test's podman) needs.
	cgroups, err := cgroupMounts()
	if err != nil {
		return err
	}
	// sysfs shows the network namespace of whoever mounted it.
	if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
		return fmt.Errorf("mount /sys: %w", err)
	}
	for _, m := range cgroups {
		if err := os.MkdirAll(m.path, 0o755); err != nil {
			return fmt.Errorf("cgroup mount point %s: %w", m.path, err)
		}
		if err := unix.Mount(m.fstype, m.path, m.fstype, 0, m.options); err != nil {
			return fmt.Errorf("mount %s on %s again: %w", m.fstype, m.path, err)
		}
	}
	if err := unix.Mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount /sys/fs/bpf: %w", err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(lo)
}

// Privileged stops t unless the process can load BPF programs and manage
// network interfaces: a skip, or a failure when EBPFNET_PRIVILEGED=require.
func Privileged(t testing.TB) {
	t.Helper()
	reason := ""
	switch {
	case os.Geteuid() != 0:
		reason = "needs root (CAP_BPF and CAP_NET_ADMIN)"
	case os.Getenv(envIsolated) == "":
		reason = "needs testenv.Main in the package's TestMain"
	default:
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err != nil {
			reason = fmt.Sprintf("cannot create a BPF map: %v", err)
		} else {
			m.Close()
		}
	}
	if reason == "" {
		return
	}
	if os.Getenv(EnvPrivileged) == "require" {
		t.Fatalf("%s=require, but this test %s", EnvPrivileged, reason)
	}
	t.Skipf("%s (set %s=require to fail instead)", reason, EnvPrivileged)
}

// Missing stops t for want of something the environment should have
// provided: a skip, or a failure when EBPFNET_PRIVILEGED=require.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv(EnvPrivileged) == "require" {
		t.Fatalf("%s=require, but %s", EnvPrivileged, what)
	}
	t.Skipf("%s (set %s=require to fail instead)", what, EnvPrivileged)
}

// NewNetns returns a new, empty network namespace, closed when t ends.
func NewNetns(t testing.TB) netns.NsHandle {
	t.Helper()
	ns, err := CreateNetns()
	if err != nil {
		t.Fatalf("new network namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// CreateNetns returns a new, empty network namespace; closing the handle
// lets it go.
func CreateNetns() (netns.NsHandle, error) {
	var ns netns.NsHandle
	err := onLockedThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		ns, err = netns.New()
		if err != nil {
			return err
		}
		return netns.Set(orig)
	})
	return ns, err
}

// RunIn calls fn on a thread inside ns. Sockets fn opens belong to ns for
// their whole life, wherever they are used afterwards.
func RunIn(ns netns.NsHandle, fn func() error) error {
	return onLockedThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter network namespace: %w", err)
		}
		return fn()
	})
}

// onLockedThread runs fn on a thread of its own and lets that thread die
// afterwards, so a thread whose namespace fn changed is never reused.
func onLockedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		errc <- fn()
	}()
	return <-errc
}

type mountEntry struct{ path, fstype, options string }

// cgroupMounts lists what is mounted at and under /sys/fs/cgroup (tmpfs,
// cgroup, cgroup2), parents first, from /proc/self/mountinfo.
func cgroupMounts() ([]mountEntry, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []mountEntry
	for _, line := range strings.Split(string(b), "\n") {
		// 30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 {
			continue
		}
		path := f[4]
		if path != "/sys/fs/cgroup" && !strings.HasPrefix(path, "/sys/fs/cgroup/") {
			continue
		}
		switch g[0] {
		case "tmpfs", "cgroup", "cgroup2":
			out = append(out, mountEntry{path: path, fstype: g[0], options: g[2]})
		}
	}
	return out, nil
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
