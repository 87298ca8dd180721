package bpf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// Where /sys/fs/bpf is not mounted, the BPF filesystem is mounted on it
// before pin_path's directories are made: sysfs takes no new directories.
// A read-only tmpfs stands in for sysfs; the tests' own mount namespace
// stands in for the host's (where ebpfnet may mount).
func TestBPFFSMountedBeforeDirectoriesAreMade(t *testing.T) {
	testenv.Privileged(t)
	root := filepath.Join(t.TempDir(), "fs-bpf")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = unix.Unmount(root, unix.MNT_DETACH) // the bpffs on top
		_ = unix.Unmount(root, unix.MNT_DETACH) // the tmpfs
	})
	if err := os.Mkdir(filepath.Join(root, "x"), 0o700); err == nil {
		t.Fatal("the stand-in for sysfs took a directory")
	}
	saved, savedCheck := bpffsRoot, mountsEndWithUs
	bpffsRoot, mountsEndWithUs = root, func() string { return "" }
	t.Cleanup(func() { bpffsRoot, mountsEndWithUs = saved, savedCheck })

	pin := filepath.Join(root, "ebpfnet", "node1")
	if err := ensureBPFFS(pin); err != nil {
		t.Fatalf("ensureBPFFS: %v", err)
	}
	if !onBPFFS(root) || !onBPFFS(pin) {
		t.Errorf("%s on bpffs: %v, %s: %v; want both", root, onBPFFS(root), pin, onBPFFS(pin))
	}
	// Again, now that it is mounted: nothing more is mounted.
	if err := ensureBPFFS(pin); err != nil {
		t.Fatal(err)
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	if n := strings.Count(string(mounts), " "+root+" bpf "); n != 1 {
		t.Errorf("%d BPF filesystems mounted on %s, want 1", n, root)
	}

	// Where the mount would die with the process, nothing is mounted.
	mountsEndWithUs = func() string { return "a mount namespace of its own" }
	other := filepath.Join(t.TempDir(), "pins")
	if err := ensureBPFFS(other); err == nil || !strings.Contains(err.Error(), "mount the host's BPF filesystem there") {
		t.Errorf("private mount namespace: %v", err)
	}
	if onBPFFS(other) {
		t.Errorf("%s was mounted", other)
	}
}
