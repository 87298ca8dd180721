package bpf

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
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
	d, err := preparePinPath(pin)
	if err != nil {
		t.Fatalf("preparePinPath: %v", err)
	}
	d.lock.Close()
	if !onBPFFS(root) || !onBPFFS(pin) {
		t.Errorf("%s on bpffs: %v, %s: %v; want both", root, onBPFFS(root), pin, onBPFFS(pin))
	}
	// Again, now that it is mounted: nothing more is mounted.
	d, err = preparePinPath(pin)
	if err != nil {
		t.Fatal(err)
	}
	d.lock.Close()
	mounts, _ := os.ReadFile("/proc/self/mounts")
	if n := strings.Count(string(mounts), " "+root+" bpf "); n != 1 {
		t.Errorf("%d BPF filesystems mounted on %s, want 1", n, root)
	}

	// Where the mount would die with the process, nothing is mounted.
	mountsEndWithUs = func() string { return "a mount namespace of its own" }
	other := filepath.Join(t.TempDir(), "pins")
	if _, err := preparePinPath(other); err == nil || !strings.Contains(err.Error(), "mount the host's BPF filesystem there") {
		t.Errorf("private mount namespace: %v", err)
	}
	if onBPFFS(other) {
		t.Errorf("%s was mounted", other)
	}
}

// A pin path never hides a file, is never the root of a BPF filesystem,
// never a directory with what ebpfnet did not make, and a refusal leaves
// nothing behind: no directory, no mount, no pin.
func TestPinPathNeverHidesOrShares(t *testing.T) {
	testenv.Privileged(t)
	saved := mountsEndWithUs
	mountsEndWithUs = func() string { return "" }
	t.Cleanup(func() { mountsEndWithUs = saved })

	// Not on a BPF filesystem, and not empty: mounting one would hide it.
	etc := t.TempDir()
	if err := os.WriteFile(filepath.Join(etc, "passwd"), []byte("root:x:0:0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(Options{MaxInterfaces: 1, PinPath: etc, Programs: []string{ProgramIngress}})
	if !errors.Is(err, ErrPinPath) || !strings.Contains(err.Error(), "would hide the 1 entries it has") {
		t.Errorf("non-empty directory: %v", err)
	}
	if onBPFFS(etc) {
		t.Errorf("a BPF filesystem was mounted over %s", etc)
		_ = unix.Unmount(etc, unix.MNT_DETACH)
	}

	// The root of a BPF filesystem, wherever it is mounted.
	root := filepath.Join(t.TempDir(), "bpffs")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", root, "bpf", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(root, unix.MNT_DETACH) })
	if _, err := Load(Options{MaxInterfaces: 1, PinPath: root, Programs: []string{ProgramIngress}}); !errors.Is(err, ErrPinPath) ||
		!strings.Contains(err.Error(), "is the root of a BPF filesystem") {
		t.Errorf("bpffs root: %v", err)
	}
	// A directory of someone else's on it.
	theirs := filepath.Join(root, "cilium")
	if err := os.Mkdir(theirs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(theirs, "globals"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(Options{MaxInterfaces: 1, PinPath: theirs, Programs: []string{ProgramIngress}}); !errors.Is(err, ErrPinPath) ||
		!strings.Contains(err.Error(), "holds globals, which ebpfnet did not make") {
		t.Errorf("someone else's directory: %v", err)
	}
	if got := pinsIn(theirs); len(got) != 0 {
		t.Errorf("pinned %v in someone else's directory", got)
	}

	// A load that fails after the pin path was made takes it back: no
	// directory, no pin.
	fresh := filepath.Join(root, "ebpfnet", "deep")
	_, err = Load(Options{MaxInterfaces: 1, PinPath: fresh, Programs: []string{ProgramIngress},
		EditSpec: func(spec *ebpf.CollectionSpec) {
			spec.Programs[ProgramIngress].Instructions = asm.Instructions{asm.Return()}
		}})
	if err == nil {
		t.Fatal("a program that does not set r0 loaded")
	}
	if _, err := os.Stat(filepath.Join(root, "ebpfnet")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed load left %s behind: %v", filepath.Join(root, "ebpfnet"), err)
	}
	// And one that succeeds keeps it, with nothing but ebpfnet's pins.
	o, err := Load(Options{MaxInterfaces: 1, PinPath: fresh, Programs: []string{ProgramIngress}})
	if err != nil {
		t.Fatal(err)
	}
	o.Close()
	if got, want := pinsIn(fresh), []string{"counters", "interfaces", "slots", "slots_hash", "meta"}; !slices.Equal(got, want) {
		t.Errorf("pinned %v, want %v", got, want)
	}
}
