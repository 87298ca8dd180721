package datapath

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrPrivileges says the process may not load programs or attach them.
var ErrPrivileges = errors.New("insufficient privileges")

// CheckPrivileges reports, in one line, which capabilities are missing:
// loading needs CAP_BPF (or CAP_SYS_ADMIN on kernels before 5.8) and
// attaching needs CAP_NET_ADMIN.
func CheckPrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
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
