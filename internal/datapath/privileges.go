package datapath

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrPrivileges says the process may not load programs or attach them.
var ErrPrivileges = errors.New("insufficient privileges")

// CheckPrivileges reports, in one line, which capabilities are missing:
// loading needs CAP_BPF (or CAP_SYS_ADMIN on kernels before 5.8) and
// attaching needs CAP_NET_ADMIN.
func CheckPrivileges() error {
	effective, _, err := capabilities()
	if err != nil {
		return err
	}
	has := func(c uint) bool { return effective&(1<<c) != 0 }
	var missing []string
	if !has(unix.CAP_BPF) && !has(unix.CAP_SYS_ADMIN) {
		missing = append(missing, "CAP_BPF")
	}
	if !has(unix.CAP_NET_ADMIN) {
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
var Kept = []uintptr{unix.CAP_BPF, unix.CAP_NET_ADMIN}

// ErrCapabilitiesWithCgo says the capabilities cannot be dropped from
// every thread of a binary built with cgo.
var ErrCapabilitiesWithCgo = errors.New("dropping capabilities needs a binary built with CGO_ENABLED=0")

// DropCapabilities drops every capability but Kept from every thread of
// the process, in every set: effective, permitted, inheritable, ambient
// and, where the process may still change it, the bounding set; and sets
// no_new_privs, so that nothing it executes can gain any back.
// Capabilities are per thread in Linux, hence AllThreadsSyscall, which Go
// offers only without cgo.
func DropCapabilities() error {
	var keep uint64
	for _, c := range Kept {
		keep |= 1 << c
	}
	effective, permitted, err := capabilities()
	if err != nil {
		return err
	}
	permitted &= keep

	allThreads := func(what string, trap, a1, a2, a3 uintptr) error {
		_, _, errno := syscall.AllThreadsSyscall(trap, a1, a2, a3)
		if errno == syscall.ENOTSUP {
			return ErrCapabilitiesWithCgo
		}
		if errno != 0 {
			return fmt.Errorf("%s: %w", what, errno)
		}
		return nil
	}
	if err := allThreads("set no_new_privs", unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return err
	}
	if err := allThreads("clear ambient capabilities", unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil {
		return err
	}
	// The bounding set can only be changed with CAP_SETPCAP; a process
	// started with CAP_BPF and CAP_NET_ADMIN alone has nothing else to lose.
	if effective&(1<<unix.CAP_SETPCAP) != 0 {
		for c := uintptr(0); c <= lastCap(); c++ {
			if keep&(1<<c) != 0 {
				continue
			}
			if err := allThreads("drop from the bounding set", unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, c, 0); err != nil {
				return err
			}
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(permitted), Permitted: uint32(permitted)},
		{Effective: uint32(permitted >> 32), Permitted: uint32(permitted >> 32)},
	}
	return allThreads("drop capabilities", unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
}

// capabilities returns the calling thread's effective and permitted sets.
func capabilities() (effective, permitted uint64, err error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, 0, fmt.Errorf("read capabilities: %w", err)
	}
	effective = uint64(data[1].Effective)<<32 | uint64(data[0].Effective)
	permitted = uint64(data[1].Permitted)<<32 | uint64(data[0].Permitted)
	return effective, permitted, nil
}

// lastCap is the highest capability this kernel knows.
func lastCap() uintptr {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return unix.CAP_LAST_CAP
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return unix.CAP_LAST_CAP
	}
	return uintptr(n)
}
