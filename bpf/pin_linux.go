package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrPinInUse says that another process owns the pin path.
var ErrPinInUse = errors.New("pin_path is in use")

// ErrPinPath says that a pin path cannot be used as one: it would hide,
// share or mix up what is not ebpfnet's.
var ErrPinPath = errors.New("bad pin_path")

// pinNames are the entries ebpfnet makes in a pin path: the maps, and the
// directory of link pins.
var pinNames = []string{"counters", "interfaces", "slots", "slots_hash", "meta", "links"}

// pinDir is a pin path made ready for the maps: on a BPF filesystem, of
// ebpfnet's own, and locked by this process. undo takes back what
// preparing it made (directories, a mount) when loading fails after it.
type pinDir struct {
	path string
	lock *os.File
	made []string // directories made, parents first
	// mounted is where a BPF filesystem was mounted, or "".
	mounted string
}

// preparePinPath makes path a directory on a BPF filesystem that holds
// nothing but ebpfnet's pins, and takes it for this process. Everything is
// checked before anything is made, and a refusal leaves nothing behind:
//   - where path is not on a BPF filesystem, one is mounted, but only where
//     the mount outlives the process (the point of a pin path), and never
//     over a directory that has anything in it: the mount would hide it;
//   - the root of a BPF filesystem (wherever it is mounted) is shared by
//     every BPF tool, and a directory with entries ebpfnet did not make is
//     someone else's: both are refused, since ebpfnet cleans up what it
//     takes for its own there.
func preparePinPath(path string) (_ *pinDir, err error) {
	path = filepath.Clean(path)
	d := &pinDir{path: path}
	defer func() {
		if err != nil {
			d.undo()
		}
	}()
	existing := nearestExisting(path)
	real, err := filepath.EvalSymlinks(existing)
	if err != nil {
		return nil, fmt.Errorf("pin_path %s: %w", path, err)
	}
	if onBPFFS(real) {
		if existing == path {
			if root, err := isBPFFSRoot(real); err != nil {
				return nil, err
			} else if root {
				return nil, fmt.Errorf("%w: %s is the root of a BPF filesystem, shared by every BPF tool: use a directory of ebpfnet's own in it, such as %s", ErrPinPath, path, filepath.Join(path, "ebpfnet"))
			}
		}
		if err := d.mkdirs(existing); err != nil {
			return nil, err
		}
	} else {
		if why := mountsEndWithUs(); why != "" {
			return nil, fmt.Errorf("pin_path %s is not on a BPF filesystem, and one ebpfnet mounted would vanish when it exits (%s): mount the host's BPF filesystem there (in Kubernetes, a hostPath volume of /sys/fs/bpf) or choose a path on it", path, why)
		}
		// Under /sys/fs/bpf the mount goes on /sys/fs/bpf itself, before
		// any directory is made (sysfs takes none); elsewhere on path.
		target := path
		if path != bpffsRoot && !strings.HasPrefix(path, bpffsRoot+"/") {
			if err := d.mkdirs(existing); err != nil {
				return nil, err
			}
		} else {
			target = bpffsRoot
		}
		if n, err := entries(target); err != nil {
			return nil, fmt.Errorf("pin_path %s: %w", path, err)
		} else if n > 0 {
			return nil, fmt.Errorf("%w: %s is not on a BPF filesystem, and mounting one on %s would hide the %d entries it has: mount a BPF filesystem there yourself, or choose a path on one", ErrPinPath, path, target, n)
		}
		if err := unix.Mount("bpf", target, "bpf", 0, "mode=0700"); err != nil {
			return nil, fmt.Errorf("pin_path %s is not on a BPF filesystem, and mounting one on %s failed: %w", path, target, err)
		}
		d.mounted = target
		if err := d.mkdirs(target); err != nil {
			return nil, err
		}
	}
	if foreign, err := foreignEntries(path); err != nil {
		return nil, fmt.Errorf("pin_path %s: %w", path, err)
	} else if len(foreign) > 0 {
		return nil, fmt.Errorf("%w: %s holds %s, which ebpfnet did not make: use a directory of ebpfnet's own", ErrPinPath, path, strings.Join(foreign, ", "))
	}
	if d.lock, err = lockPinPath(path); err != nil {
		return nil, err
	}
	return d, nil
}

// mkdirs makes the directories from below existing down to d.path,
// remembering them for undo.
func (d *pinDir) mkdirs(existing string) error {
	rel, err := filepath.Rel(existing, d.path)
	if err != nil || rel == "." {
		return err
	}
	dir := existing
	for _, part := range strings.Split(rel, "/") {
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("pin_path %s: %w", d.path, err)
		} else if err == nil {
			d.made = append(d.made, dir)
		}
	}
	return nil
}

// undo removes what preparing the pin path made, and the pins in it that
// loading made, deepest first, and unmounts what it mounted.
func (d *pinDir) undo() {
	if d.lock != nil {
		d.lock.Close()
		d.lock = nil
	}
	for _, dir := range slices.Backward(d.made) {
		if dir == d.path {
			for _, name := range pinNames {
				_ = os.Remove(filepath.Join(dir, name))
			}
		}
		_ = os.Remove(dir)
	}
	d.made = nil
	if d.mounted != "" {
		_ = unix.Unmount(d.mounted, 0)
		d.mounted = ""
	}
}

// removeNewPins removes the pins that are not in before: what a failed
// load pinned in a directory that was there already.
func (d *pinDir) removeNewPins(before []string) {
	for _, name := range pinNames {
		if name != "links" && !slices.Contains(before, name) {
			_ = os.Remove(filepath.Join(d.path, name))
		}
	}
}

// entries counts the entries of dir.
func entries(dir string) (int, error) {
	des, err := os.ReadDir(dir)
	return len(des), err
}

// pinsIn lists which of ebpfnet's names are in dir.
func pinsIn(dir string) []string {
	var out []string
	for _, name := range pinNames {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			out = append(out, name)
		}
	}
	return out
}

// foreignEntries lists the entries of dir that are not ebpfnet's.
func foreignEntries(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, de := range des {
		if !slices.Contains(pinNames, de.Name()) {
			out = append(out, de.Name())
		}
	}
	return out, nil
}

// lockPinPath takes the pin path for this process: an exclusive flock on
// the directory, held until the returned file is closed (or the process
// ends, however it ends). Only the holder allocates rows, attaches or
// detaches through the pinned state.
func lockPinPath(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pin_path %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held by %s; one ebpfnet per pin_path", ErrPinInUse, path, lockHolder(path))
		}
		return nil, fmt.Errorf("lock pin_path %s: %w", path, err)
	}
	return f, nil
}

// lockHolder names the process holding the flock on path, from /proc/locks
// (which shows the PIDs this PID namespace can see).
func lockHolder(path string) string {
	const unknown = "another process (its PID is not visible here)"
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return unknown
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return unknown
	}
	defer f.Close()
	// 1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || fields[5] != want {
			continue
		}
		if pid, err := strconv.Atoi(fields[4]); err == nil && pid > 0 {
			return fmt.Sprintf("PID %d", pid)
		}
	}
	return unknown
}

// bpffsRoot is where a BPF filesystem is conventionally mounted (a
// variable for the tests, which stand a read-only mount in for sysfs).
var bpffsRoot = "/sys/fs/bpf"

func onBPFFS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.BPF_FS_MAGIC
}

// isBPFFSRoot reports whether path (without symlinks) is where the root
// of a BPF filesystem is mounted, from /proc/self/mountinfo: a bind mount
// of a directory in one (as a systemd unit makes) is not its root.
func isBPFFSRoot(path string) (bool, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("read mounts: %w", err)
	}
	root := false
	for _, line := range strings.Split(string(b), "\n") {
		// 36 25 0:32 / /sys/fs/bpf rw,nosuid - bpf bpf rw,mode=700
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 1 || unescape(f[4]) != path {
			continue
		}
		// The last mount on path is the one seen there.
		root = g[0] == "bpf" && unescape(f[3]) == "/"
	}
	return root, nil
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// nearestExisting returns path, or its closest ancestor that exists.
func nearestExisting(path string) string {
	for {
		if _, err := os.Stat(path); err == nil || path == "/" || path == "." {
			return path
		}
		path = filepath.Dir(path)
	}
}

// mountsEndWithUs is privateMounts, or a stand-in in tests.
var mountsEndWithUs = privateMounts

// privateMounts says why a mount made by this process would end with it,
// or "" if it would not: it would when the process is PID 1 (a container's
// only process) or in a mount namespace of its own (ip netns exec,
// unshare -m), told by comparing its mount namespace with PID 1's, or,
// where that cannot be read, with its parent's.
func privateMounts() string {
	if os.Getpid() == 1 {
		return "ebpfnet is PID 1, so its mount namespace ends with it"
	}
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return "cannot read its mount namespace: " + err.Error()
	}
	for _, other := range []string{"/proc/1/ns/mnt", fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid())} {
		ns, err := os.Readlink(other)
		if err != nil {
			continue
		}
		if ns != self {
			return "ebpfnet runs in a mount namespace of its own, as under ip netns exec or unshare -m"
		}
		return ""
	}
	return "cannot compare its mount namespace with PID 1's or its parent's"
}
