package pods

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/config"
)

// nsidOf is the id this network namespace knows the namespace mounted at
// path by (the id a veth's IFLA_LINK_NETNSID names its peer's namespace
// by), or -1 if it has none yet: the kernel gives one when it first
// reports a link whose peer is there.
func nsidOf(path string) (int, error) {
	// O_NONBLOCK and a check of what was opened: the path comes from a
	// file anyone who can write the cache directory writes.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(fd)
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil || st.Type != unix.NSFS_MAGIC {
		return -1, fmt.Errorf("%s is not a namespace", path)
	}
	return netlink.GetNetNsIdByFd(fd)
}

// peerIndexes lists the interfaces of the peer namespace with id nsid, by
// name, without entering it (which would take CAP_SYS_ADMIN): an
// RTM_GETLINK dump with IFLA_TARGET_NETNSID (4.20+), which CAP_NET_ADMIN
// allows.
func peerIndexes(nsid int) (map[string]int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	// nlmsghdr, ifinfomsg (16 bytes), then IFLA_TARGET_NETNSID (s32).
	req := make([]byte, unix.NLMSG_HDRLEN+16+8)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.RTM_GETLINK)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], 1)
	attr := req[unix.NLMSG_HDRLEN+16:]
	binary.NativeEndian.PutUint16(attr[0:], 8)
	binary.NativeEndian.PutUint16(attr[2:], unix.IFLA_TARGET_NETNSID)
	binary.NativeEndian.PutUint32(attr[4:], uint32(int32(nsid)))
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	out := map[string]int{}
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, err
		}
		for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(b[0:]))
			typ := binary.NativeEndian.Uint16(b[4:])
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return nil, errors.New("RTM_GETLINK: truncated message")
			}
			switch typ {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if errno := int32(binary.NativeEndian.Uint32(b[unix.NLMSG_HDRLEN:])); errno != 0 {
					return nil, fmt.Errorf("RTM_GETLINK in namespace %d: %w", nsid, unix.Errno(-errno))
				}
				return out, nil
			case unix.RTM_NEWLINK:
				if name, index, ok := parseLink(b[unix.NLMSG_HDRLEN:l]); ok {
					out[name] = index
				}
			}
			b = b[min((l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1), len(b)):]
		}
	}
}

// parseLink reads an RTM_NEWLINK body: struct ifinfomsg, then attributes,
// of which IFLA_IFNAME.
func parseLink(m []byte) (string, int, bool) {
	if len(m) < 16 {
		return "", 0, false
	}
	index := int(int32(binary.NativeEndian.Uint32(m[4:])))
	for a := m[16:]; len(a) >= 4; {
		l := int(binary.NativeEndian.Uint16(a[0:]))
		if l < 4 || l > len(a) {
			return "", 0, false
		}
		if binary.NativeEndian.Uint16(a[2:])&0x3fff == unix.IFLA_IFNAME {
			name := a[4:l]
			for len(name) > 0 && name[len(name)-1] == 0 {
				name = name[:len(name)-1]
			}
			return string(name), index, len(name) > 0 && len(name) <= 15
		}
		a = a[min((l+unix.NLA_ALIGNTO-1)&^(unix.NLA_ALIGNTO-1), len(a)):]
	}
	return "", 0, false
}

// DefaultCacheDir is libcni's cache directory, where containerd and CRI-O
// leave it.
const DefaultCacheDir = config.DefaultCNICacheDir
