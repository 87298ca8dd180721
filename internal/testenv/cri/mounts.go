//go:build linux

package cri

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func (h *Harness) bindMount(src, target string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mount %s on %s: %w", src, target, err)
	}
	h.mounts = append(h.mounts, target)
	return nil
}

// mountsUnder lists the mount points under dir, deepest first.
func (h *Harness) mountsUnder(dir string) []string {
	var out []string
	for _, m := range readMountinfo() {
		if strings.HasPrefix(m.path, dir+"/") {
			out = append(out, m.path)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

type mountEntry struct {
	path, fstype, optional string
}

func readMountinfo() []mountEntry {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 6 || len(g) < 1 {
			continue
		}
		out = append(out, mountEntry{path: unescapeMount(f[4]), fstype: g[0], optional: strings.Join(f[6:], " ")})
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// sharedMounts lists the mount points that propagate mounts to other
// mount namespaces: none in testenv.Main's private mount namespace.
func sharedMounts() []string {
	var out []string
	for _, m := range readMountinfo() {
		if strings.Contains(m.optional, "shared:") {
			out = append(out, m.path)
		}
	}
	return out
}
