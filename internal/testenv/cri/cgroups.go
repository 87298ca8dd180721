//go:build linux

package cri

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// cgroupRoots lists the cgroup hierarchies mounted under /sys/fs/cgroup.
func cgroupRoots() []string {
	var out []string
	for _, m := range readMountinfo() {
		if (m.fstype == "cgroup" || m.fstype == "cgroup2") && strings.HasPrefix(m.path, "/sys/fs/cgroup/") {
			out = append(out, m.path)
		}
	}
	if len(out) == 0 { // cgroup2 alone, on /sys/fs/cgroup
		out = append(out, "/sys/fs/cgroup")
	}
	return out
}

// missingKubepods lists the hierarchies' kubepods directories that do not
// exist yet.
func missingKubepods() []string {
	var out []string
	for _, root := range cgroupRoots() {
		d := filepath.Join(root, "kubepods")
		if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
			out = append(out, d)
		}
	}
	return out
}

// podCgroupParent is the kubelet's cgroupfs-driver parent of a best-effort
// pod's containers.
func podCgroupParent(uid string) string { return "/kubepods/besteffort/pod" + uid }

// removePodCgroups removes the pod's cgroup directories, which outlive its
// containers as they do under a kubelet (which removes them itself), in
// every hierarchy, deepest first.
func removePodCgroups(uid string) error {
	var errs []error
	for _, root := range cgroupRoots() {
		top := filepath.Join(root, podCgroupParent(uid))
		var dirs []string
		_ = filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := unix.Rmdir(dirs[i]); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}
