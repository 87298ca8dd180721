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

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// limited runs the sidecar from sh, after the shell line setup (ulimit, a
// cgroup), with args.
func limited(t *testing.T, setup string, args ...string) *sidecar {
	t.Helper()
	shArgs := append([]string{"-c", setup + ` && exec "$@"`, "sh", binary(t)}, args...)
	return startCommand(t, []string{"OTEL_METRICS_EXPORTER=none"}, "sh", shArgs...)
}

// Out of file descriptors: the limit is named at start and on every
// interface it keeps from being counted, once each, and the attach mode
// stays what it was (no false "the kernel has no tcx").
func TestFileLimitIsNamed(t *testing.T) {
	testenv.Privileged(t)
	// Links are file descriptors (tc filters are not): tcx, or XDP where
	// the kernel has no tcx (6.1). XDP takes one link per interface and
	// tcx two: 60 interfaces overrun 48 descriptors in either mode.
	mode := "tcx"
	if !testenv.HasTCX() {
		mode = "xdp"
	}
	peers := testenv.NewNetns(t)
	const n = 60
	for i := range n {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("nofile%02d", i)}, PeerName: fmt.Sprintf("nofile%02dp", i), PeerNamespace: netlink.NsFd(peers)}
		if err := netlink.LinkAdd(veth); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	}
	sc := limited(t, "ulimit -n 48", "--interfaces", "nofile*", "--attach", mode)
	testenv.WaitFor(t, "the start line", sc.started)
	out := sc.stderr.String()
	if code := sc.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
	failed := strings.Count(out, "open-file limit (48) is reached")
	if !strings.Contains(out, "the open-file limit is lower than max_interfaces needs") || failed == 0 || failed == n {
		t.Errorf("%d interfaces failed for the file limit; log:\n%s", failed, out)
	}
	if strings.Contains(out, "no tcx") || !strings.Contains(out, "attach="+mode) {
		t.Errorf("the attach mode changed or was not said:\n%s", out)
	}
}

// A memory cgroup too small for max_interfaces' maps: one line, exit 1,
// nothing loaded, instead of the process killed as the maps are made.
func TestMemoryLimitIsNamed(t *testing.T) {
	testenv.Privileged(t)
	root := memoryCgroupRoot(t)
	cg := filepath.Join(root, fmt.Sprintf("ebpfnet-test-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(cg) })
	limitFile := "memory.max"
	if _, err := os.Stat(filepath.Join(cg, limitFile)); err != nil {
		limitFile = "memory.limit_in_bytes"
	}
	if err := os.WriteFile(filepath.Join(cg, limitFile), []byte("30M"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := testenv.NewPair(t, "memcg0")
	join := "echo $$ > " + filepath.Join(cg, "cgroup.procs")
	// 65536 rows of per-CPU counters are 23 MiB per CPU alone.
	sc := limited(t, join, "--interfaces", p.Local, "--config", writeConfig(t, "max_interfaces: 65536\n"))
	select {
	case <-sc.done:
		sc.done <- nil
	case <-time.After(testenv.Patience):
		t.Fatalf("the sidecar started in a cgroup too small for its maps:\n%s", sc.stderr.String())
	}
	line := strings.TrimSpace(sc.stderr.String())
	if code := sc.cmd.ProcessState.ExitCode(); code != 1 || strings.Count(line, "\n") != 0 ||
		!strings.Contains(line, "max_interfaces 65536 needs about") || !strings.Contains(line, "of its 30 MiB limit") {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and one line naming max_interfaces and the limit", code, line)
	}
	if got := testenv.Attachments(t, p.LocalIndex); len(got) != 0 {
		t.Errorf("attached %v", got)
	}
	// The default fits, in the same cgroup with room for the process.
	if err := os.WriteFile(filepath.Join(cg, limitFile), []byte("256M"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok := limited(t, join, "--interfaces", p.Local)
	testenv.WaitFor(t, "the start line", ok.started)
	if code := ok.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("with the default max_interfaces: exit %d\n%s", code, ok.stderr.String())
	}
}

// memoryCgroupRoot is where a memory cgroup can be made: the cgroup2
// hierarchy with the memory controller, or v1's memory hierarchy.
func memoryCgroupRoot(t *testing.T) string {
	t.Helper()
	for _, dir := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if _, err := os.Stat(filepath.Join(dir, "memory.limit_in_bytes")); err == nil {
			return dir
		}
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control")); err == nil && strings.Contains(string(b), "memory") {
			return dir
		}
	}
	testenv.Missing(t, "a cgroup hierarchy with the memory controller")
	return ""
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ebpfnet.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Every way out that a process can see ends with its hooks detached: in
// tc mode without pins a filter outlives its process otherwise. (SIGKILL
// cannot be seen: README says what it leaves and how to remove it.)
func TestEveryExitDetaches(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "exit0")
	args := []string{"--interfaces", p.Local, "--attach", "tc", "--interval", "200ms"}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		sc := startCommand(t, []string{"OTEL_METRICS_EXPORTER=none"}, binary(t), args...)
		testenv.WaitFor(t, "the start line", sc.started)
		if code := sc.stop(t, sig); code != 0 {
			t.Errorf("%v: exit %d", sig, code)
		}
		requireDetached(t, p)
	}

	// The table's reader goes away (ebpfnet | head): SIGPIPE.
	cmd := exec.Command(binary(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	buf := make([]byte, 4096)
	if _, err := out.Read(buf); err != nil { // the first table
		t.Fatal(err)
	}
	out.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(testenv.Patience):
		t.Fatal("the sidecar went on after its stdout was closed")
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("SIGPIPE: exit %d\n%s", code, stderr.String())
	}
	requireDetached(t, p)
}
