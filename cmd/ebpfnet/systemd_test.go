package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// unitPath is the example unit, or the copy EBPFNET_UNIT names (the 6.1 VM
// has no checkout).
func unitPath() string {
	if p := os.Getenv("EBPFNET_UNIT"); p != "" {
		return p
	}
	return "../../examples/systemd/ebpfnet.service"
}

// unitSettings reads the unit's [Service] settings; a key given twice keeps
// both values, space-separated.
func unitSettings(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(unitPath())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, _ := strings.Cut(line, "=")
			out[k] = strings.TrimSpace(out[k] + " " + v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// The unit passes systemd-analyze verify without a word, and its exposure
// in systemd-analyze security is at most 2.0. (No systemd runs as PID 1
// here: the next test runs the binary with the unit's privileges instead.)
func TestSystemdUnitChecks(t *testing.T) {
	testenv.Privileged(t)
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testenv.Missing(t, "systemd-analyze (Debian's systemd package)")
	}
	// The unit as installed, but with ExecStart on the binary built here,
	// which verify checks is executable.
	body, err := os.ReadFile(unitPath())
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "ebpfnet.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(body), "/usr/local/bin/ebpfnet", binary(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The threshold is in tenths: 20 is an exposure of 2.0.
	out, err = exec.Command(analyze, "security", "--offline=true", "--threshold=20", unit).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	t.Log(lines[len(lines)-1])
}

// The binary run with exactly the unit's privilege set (its user, ambient
// and bounding capabilities, no new privileges) and its ExecStart's pin
// path, prepared as its ExecStartPre does, counts exactly.
func TestRunsWithTheUnitsPrivileges(t *testing.T) {
	testenv.Privileged(t)
	u := unitSettings(t)
	caps := "-all"
	for _, c := range strings.Fields(u["AmbientCapabilities"]) {
		caps += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	if u["CapabilityBoundingSet"] != u["AmbientCapabilities"] || caps != "-all,+bpf,+net_admin" || u["NoNewPrivileges"] != "yes" || u["User"] != "ebpfnet" {
		t.Fatalf("the unit's privileges changed: %v; update this test with them", u)
	}
	args := strings.Fields(u["ExecStart"])[1:]
	source, target, _ := strings.Cut(u["BindPaths"], ":")
	if len(args) != 2 || args[0] != "--pin-path" || args[1] != target || !strings.HasPrefix(source, "/sys/fs/bpf/") {
		t.Fatalf("ExecStart %q, BindPaths %q: update this test", u["ExecStart"], u["BindPaths"])
	}
	// ExecStartPre: the directory on the BPF filesystem, owned by the
	// service's user (here nobody, standing in for the ebpfnet user); then
	// BindPaths: bound where that user can reach it (a directory of the
	// test's standing in for /run/ebpfnet/pins).
	if err := os.MkdirAll(source, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(source, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(source) })
	run, err := os.MkdirTemp("", "ebpfnet-run")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(run, 0o755); err != nil {
		t.Fatal(err)
	}
	pin := filepath.Join(run, "pins")
	if err := os.Mkdir(pin, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(source, pin, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(pin, unix.MNT_DETACH); _ = os.RemoveAll(run) })

	p := countsUnderSetpriv(t, "unit0", caps, []string{"--no-new-privs"}, "--pin-path", pin)
	// The pins outlive it, in the directory it was given, and go on counting.
	if got := testenv.Attachments(t, p.LocalIndex); len(got) != 2 {
		t.Errorf("after the service stopped: attached %v, want its two pinned hooks", got)
	}
	if _, err := os.Stat(filepath.Join(pin, "counters")); err != nil {
		t.Errorf("pinned counters: %v", err)
	}
}
