//go:build linux

package datapath

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/cap"
)

// ErrPrivileges says the process may not load programs or attach them.
var ErrPrivileges = errors.New("insufficient privileges")

// CheckPrivileges reports, in one line, which capabilities are missing:
// loading needs CAP_BPF (or CAP_SYS_ADMIN on kernels before 5.8) and
// attaching needs CAP_NET_ADMIN.
func CheckPrivileges() error {
	proc := cap.GetProc()
	has := func(v cap.Value) bool { ok, _ := proc.GetFlag(cap.Effective, v); return ok }
	var missing []string
	if !has(cap.BPF) && !has(cap.SYS_ADMIN) {
		missing = append(missing, "CAP_BPF")
	}
	if !has(cap.NET_ADMIN) {
		missing = append(missing, "CAP_NET_ADMIN")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: ebpfnet needs root, or CAP_BPF and CAP_NET_ADMIN (missing %s)", ErrPrivileges, strings.Join(missing, " and "))
	}
	return nil
}

// Kept are the capabilities ebpfnet keeps once started: CAP_BPF for the
// maps and links of interfaces that appear later, CAP_NET_ADMIN to attach
// and detach them.
var Kept = []cap.Value{cap.BPF, cap.NET_ADMIN}

// DropCapabilities drops every capability but Kept from every thread of
// the process, in every set: effective, permitted, inheritable, ambient
// and, where the process may still change it, the bounding set; and sets
// no_new_privs, so that nothing it executes can gain any back.
// Capabilities are per thread in Linux: libcap's cap package changes them
// on every thread (through psx), with or without cgo.
func DropCapabilities() error {
	if _, err := cap.Prctlw(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	if err := cap.ResetAmbient(); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	// The bounding set can only be changed with CAP_SETPCAP; a process
	// started with CAP_BPF and CAP_NET_ADMIN alone has nothing else to lose.
	if ok, _ := cap.GetProc().GetFlag(cap.Effective, cap.SETPCAP); ok {
		var drop []cap.Value
		for v := cap.Value(0); v < cap.MaxBits(); v++ {
			if !isKept(v) {
				drop = append(drop, v)
			}
		}
		if err := cap.DropBound(drop...); err != nil {
			return fmt.Errorf("drop from the bounding set: %w", err)
		}
	}
	set := cap.NewSet()
	proc := cap.GetProc()
	for _, v := range Kept {
		if ok, _ := proc.GetFlag(cap.Permitted, v); ok {
			if err := set.SetFlag(cap.Permitted, true, v); err != nil {
				return err
			}
			if err := set.SetFlag(cap.Effective, true, v); err != nil {
				return err
			}
		}
	}
	if err := set.SetProc(); err != nil {
		return fmt.Errorf("drop capabilities: %w", err)
	}
	return nil
}

func isKept(v cap.Value) bool {
	for _, k := range Kept {
		if k == v {
			return true
		}
	}
	return false
}
