package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/bpf"
)

// kernelStats reads every interface's error and drop counters with one
// RTM_GETSTATS dump asking for IFLA_STATS_LINK_64 only: a compact message
// per interface (about 200 bytes, against kilobytes for RTM_GETLINK),
// parsed in place from a reused buffer, so a collection allocates nothing
// for it.
type kernelStats struct {
	fd  int
	buf []byte
	req [unix.NLMSG_HDRLEN + 12]byte
	seq atomic.Uint32
}

// newKernelStats opens a netlink socket in the calling thread's network
// namespace, where it stays.
func newKernelStats() (*kernelStats, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	return &kernelStats{fd: fd, buf: make([]byte, 64<<10)}, nil
}

func (k *kernelStats) close() { unix.Close(k.fd) }

// read fills dst (cleared first) with the errors and drops of every
// interface in the namespace, by ifindex.
func (k *kernelStats) read(dst map[int][bpf.NumDirections]KernelStats) error {
	clear(dst)
	seq := k.seq.Add(1)
	// struct nlmsghdr, then struct if_stats_msg {family, pad1, pad2,
	// ifindex, filter_mask}.
	r := k.req[:]
	binary.NativeEndian.PutUint32(r[0:], uint32(len(r)))
	binary.NativeEndian.PutUint16(r[4:], unix.RTM_GETSTATS)
	binary.NativeEndian.PutUint16(r[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(r[8:], seq)
	binary.NativeEndian.PutUint32(r[12:], 0)
	clear(r[unix.NLMSG_HDRLEN:])
	binary.NativeEndian.PutUint32(r[unix.NLMSG_HDRLEN+8:], 1<<(unix.IFLA_STATS_LINK_64-1))
	if err := unix.Sendto(k.fd, r, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("RTM_GETSTATS: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(k.fd, k.buf, 0)
		if err != nil {
			return fmt.Errorf("RTM_GETSTATS: %w", err)
		}
		b := k.buf[:n]
		for len(b) >= unix.NLMSG_HDRLEN {
			l := int(binary.NativeEndian.Uint32(b[0:]))
			typ := binary.NativeEndian.Uint16(b[4:])
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return errors.New("RTM_GETSTATS: truncated message")
			}
			if binary.NativeEndian.Uint32(b[8:]) == seq {
				switch typ {
				case unix.NLMSG_DONE:
					return nil
				case unix.NLMSG_ERROR:
					if errno := int32(binary.NativeEndian.Uint32(b[unix.NLMSG_HDRLEN:])); errno != 0 {
						return fmt.Errorf("RTM_GETSTATS: %w", unix.Errno(-errno))
					}
					return nil
				case unix.RTM_NEWSTATS:
					parseStats(b[unix.NLMSG_HDRLEN:l], dst)
				}
			}
			b = b[min(nlmAlign(l), len(b)):]
		}
	}
}

// parseStats reads one RTM_NEWSTATS body: struct if_stats_msg, then
// attributes, of which IFLA_STATS_LINK_64 is struct rtnl_link_stats64.
func parseStats(m []byte, dst map[int][bpf.NumDirections]KernelStats) {
	if len(m) < 12 {
		return
	}
	ifindex := int(binary.NativeEndian.Uint32(m[4:]))
	for a := m[12:]; len(a) >= 4; {
		l := int(binary.NativeEndian.Uint16(a[0:]))
		typ := binary.NativeEndian.Uint16(a[2:]) & nlaTypeMask
		if l < 4 || l > len(a) {
			return
		}
		// rx_errors, tx_errors, rx_dropped and tx_dropped are the fifth to
		// eighth u64 of struct rtnl_link_stats64.
		if v := a[4:l]; typ == unix.IFLA_STATS_LINK_64 && len(v) >= 64 {
			u := func(off int) uint64 { return binary.NativeEndian.Uint64(v[off:]) }
			dst[ifindex] = [bpf.NumDirections]KernelStats{
				bpf.Receive:  {Errors: u(32), Dropped: u(48)},
				bpf.Transmit: {Errors: u(40), Dropped: u(56)},
			}
		}
		a = a[min(nlaAlign(l), len(a)):]
	}
}

func nlmAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }
func nlaAlign(n int) int { return (n + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1) }

// nlaTypeMask strips NLA_F_NESTED and NLA_F_NET_BYTEORDER from a type.
const nlaTypeMask = 0x3fff
