//go:build linux

package testenv

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// WithCapabilities runs fn on a thread of its own whose effective and
// permitted capabilities are exactly caps, and lets that thread die
// afterwards. Capabilities are per thread in Linux, so the BPF objects fn
// creates are made under exactly these privileges (the verifier judges a
// program by its loader's), while the rest of the test process keeps its
// own. The capability sets fn's thread really had are returned, as
// /proc/thread-self/status shows them.
func WithCapabilities(caps []uintptr, fn func() error) (effective uint64, err error) {
	err = onLockedThread(func() error {
		var set uint64
		for _, c := range caps {
			set |= 1 << c
		}
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		data := [2]unix.CapUserData{
			{Effective: uint32(set), Permitted: uint32(set)},
			{Effective: uint32(set >> 32), Permitted: uint32(set >> 32)},
		}
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			return fmt.Errorf("capset: %w", err)
		}
		if effective, err = ThreadCapabilities("CapEff"); err != nil {
			return err
		}
		return fn()
	})
	return effective, err
}

// ThreadCapabilities reads one capability set (CapEff, CapPrm, CapBnd,
// CapAmb, CapInh) of the calling thread.
func ThreadCapabilities(set string) (uint64, error) {
	return StatusCapabilities("/proc/thread-self/status", set)
}

// ProcessCapabilities reads one capability set of process pid (or
// NoNewPrivs, which reads the same way).
func ProcessCapabilities(pid int, set string) (uint64, error) {
	return StatusCapabilities(fmt.Sprintf("/proc/%d/status", pid), set)
}

func StatusCapabilities(path, set string) (uint64, error) {
	v, err := statusField(path, set)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(v, 16, 64)
}

// StatusField returns a field of /proc/PID/status, as it stands there.
func StatusField(pid int, field string) (string, error) {
	return statusField(fmt.Sprintf("/proc/%d/status", pid), field)
}

func statusField(path, field string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("%s: no %s", path, field)
}
