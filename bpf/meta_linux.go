package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Meta is what pinned state is, as struct ebpfnet_meta: the layout of its
// maps and the network namespace whose interfaces its rows and slots name.
// A zero Meta is state that has just been made, or pinned by an ebpfnet
// of layout 3, which had none.
type Meta struct {
	Layout      uint32
	_           uint32
	NetnsCookie uint64
	NetnsInode  uint64
}

// ReadMeta returns the meta map's one value.
func (o *Objects) ReadMeta() (Meta, error) {
	var m Meta
	if err := o.meta.Lookup(uint32(0), &m); err != nil {
		return m, fmt.Errorf("read meta: %w", err)
	}
	return m, nil
}

// WriteMeta stores m.
func (o *Objects) WriteMeta(m Meta) error {
	if err := o.meta.Update(uint32(0), &m, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("write meta: %w", err)
	}
	return nil
}

// Netns identifies the calling thread's network namespace: its cookie
// (SO_NETNS_COOKIE, 5.14+; unique for the life of the system, never
// reused) and its inode (which a later namespace may reuse).
func Netns() (cookie, inode uint64, err error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("netns cookie: %w", err)
	}
	defer unix.Close(fd)
	cookie, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, 0, fmt.Errorf("netns cookie: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return 0, 0, fmt.Errorf("netns inode: %w", err)
	}
	return cookie, st.Ino, nil
}
