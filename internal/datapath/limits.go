//go:build linux

package datapath

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
)

// ErrMemoryLimit says the memory cgroup has no room for the maps
// max_interfaces needs.
var ErrMemoryLimit = errors.New("memory limit too low for max_interfaces")

// mapsMemory estimates the kernel memory max_interfaces' maps take, charged
// to the process's memory cgroup: above all the per-CPU counters, one row
// per interface on every possible CPU.
func mapsMemory(maxInterfaces, cpus int) uint64 {
	const (
		countersRow = 352 // struct ebpfnet_counters
		interface_  = 80  // struct ebpfnet_interface
		hashEntry   = 96  // slots_hash: key, value and the kernel's element
		slots       = bpf.DirectIfindexes * 8
	)
	n := uint64(maxInterfaces)
	return n*countersRow*uint64(cpus) + n*interface_ + n*hashEntry + slots
}

// checkLimits says, before anything is loaded, whether the process's
// limits leave room for max_interfaces: a memory cgroup too small for the
// maps is refused in one line (it would otherwise kill the process as the
// maps are made, with no word); an open-file limit below what the links of
// max_interfaces interfaces need is warned about in one line.
func checkLimits(cfg config.Config, log *slog.Logger) error {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	need := mapsMemory(cfg.MaxInterfaces, cpus)
	if limit, usage, ok := memoryLimit(); ok && need > limit-min(usage, limit) {
		return fmt.Errorf("%w: max_interfaces %d needs about %d MiB of kernel memory for its maps (per-CPU counters on %d CPUs), and the memory cgroup has %d MiB left of its %d MiB limit: lower max_interfaces or raise the limit",
			ErrMemoryLimit, cfg.MaxInterfaces, mib(need), cpus, mib(limit-min(usage, limit)), mib(limit))
	}
	// tcx and XDP links are file descriptors held for as long as the
	// interface is counted; tc filters are not.
	links := 0
	switch cfg.Attach {
	case config.AttachXDP:
		links = cfg.MaxInterfaces
	case config.AttachTCX, config.AttachAuto:
		links = len(cfg.Directions) * cfg.MaxInterfaces
	}
	const others = 64 // maps, programs, sockets, the exporters' connections
	var lim unix.Rlimit
	if links > 0 && unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur < uint64(links+others) {
		log.Warn("the open-file limit is lower than max_interfaces needs: past about this many interfaces, attaching fails (ebpfnet.attach.errors, error.type file_limit); raise it (ulimit -n, LimitNOFILE=) or lower max_interfaces",
			"limit", lim.Cur, "interfaces", max(0, int(lim.Cur)-others)/max(1, links/cfg.MaxInterfaces), "max_interfaces", cfg.MaxInterfaces, "needs", links+others)
	}
	return nil
}

func mib(b uint64) uint64 { return (b + 1<<20 - 1) >> 20 }

// memoryLimit returns the memory limit of the process's cgroup (the
// lowest of its and its ancestors') and its usage, cgroup v2 or v1.
func memoryLimit() (limit, usage uint64, ok bool) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, 0, false
	}
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0, 0, false
	}
	for _, line := range strings.Split(string(self), "\n") {
		// 0::/user.slice/x (v2), or 7:memory:/x (v1).
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		v2 := parts[0] == "0" && parts[1] == ""
		v1 := slices.Contains(strings.Split(parts[1], ","), "memory")
		if !v2 && !v1 {
			continue
		}
		dir, ok := cgroupDir(string(info), parts[2], v2)
		if !ok {
			continue
		}
		limitFile, usageFile := "memory.max", "memory.current"
		if v1 {
			limitFile, usageFile = "memory.limit_in_bytes", "memory.usage_in_bytes"
		}
		usage, ok = readNumber(filepath.Join(dir, usageFile))
		if !ok {
			continue
		}
		limit = ^uint64(0)
		// The limit that applies is the lowest on the way up.
		for d := dir; ; d = filepath.Dir(d) {
			if l, ok := readNumber(filepath.Join(d, limitFile)); ok {
				limit = min(limit, l)
			} else if _, err := os.Stat(filepath.Join(d, limitFile)); err != nil {
				break // above the hierarchy's root
			}
			if d == "/" {
				break
			}
		}
		// v1 says "no limit" with a number near 2^63.
		if limit >= 1<<62 {
			return 0, 0, false
		}
		return limit, usage, true
	}
	return 0, 0, false
}

// cgroupDir finds where cgroup path is mounted: in a cgroup2 mount (v2),
// or in a v1 mount with the memory controller.
func cgroupDir(mountinfo, path string, v2 bool) (string, bool) {
	for _, line := range strings.Split(mountinfo, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 {
			continue
		}
		if v2 && g[0] != "cgroup2" || !v2 && (g[0] != "cgroup" || !slices.Contains(strings.Split(g[2], ","), "memory")) {
			continue
		}
		root, mnt := f[3], f[4]
		rel, err := filepath.Rel(root, path)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		return filepath.Join(mnt, rel), true
	}
	return "", false
}

// readNumber reads a cgroup file holding a number; "max" is no limit.
func readNumber(path string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return ^uint64(0), true
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}
