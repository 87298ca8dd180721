package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrPinInUse says that another process owns the pin path.
var ErrPinInUse = errors.New("pin_path is in use")

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

// ensureBPFFS makes path a directory on a BPF filesystem. Where path is not
// on one, ebpfnet mounts one, but only where that mount outlives it: the
// point of a pin path is to outlive the process. Under /sys/fs/bpf the
// mount goes on /sys/fs/bpf itself, before any directory is made (sysfs
// takes none); elsewhere on path.
func ensureBPFFS(path string) error {
	path = filepath.Clean(path)
	if onBPFFS(nearestExisting(path)) {
		if err := os.MkdirAll(path, 0o700); err != nil {
			return fmt.Errorf("pin_path %s: %w", path, err)
		}
		return nil
	}
	if why := mountsEndWithUs(); why != "" {
		return fmt.Errorf("pin_path %s is not on a BPF filesystem, and one ebpfnet mounted would vanish when it exits (%s): mount the host's BPF filesystem there (in Kubernetes, a hostPath volume of /sys/fs/bpf) or choose a path on it", path, why)
	}
	target := path
	if path == bpffsRoot || strings.HasPrefix(path, bpffsRoot+"/") {
		target = bpffsRoot
	} else if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("pin_path %s: %w", path, err)
	}
	if err := unix.Mount("bpf", target, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("pin_path %s is not on a BPF filesystem, and mounting one on %s failed: %w", path, target, err)
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("pin_path %s: %w", path, err)
	}
	return nil
}

func onBPFFS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.BPF_FS_MAGIC
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
