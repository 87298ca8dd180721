//go:build linux

package attach

import (
	"encoding/binary"
	"errors"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/bpf"
)

// PollInterval is how often the tcx and XDP links are asked whether they
// are still attached. The kernel says nothing when someone detaches a link
// (bpftool link detach), so a removed hook is put back within about this
// long: inside the second promised, with room for the restore. Each
// question is a system call that takes the kernel's rtnl lock, so the
// interval is also a cost that grows with the links held (BENCHMARKS.md,
// peers). tc filters are watched through the kernel's own notices instead.
const PollInterval = 500 * time.Millisecond

// ensure checks that what a holds on direction d's hook is still there,
// and puts it back if not (or if an earlier attempt failed).
func (m *Manager) ensure(a *attached, d bpf.Direction, cause string) error {
	h := a.holds[d]
	hook := h.hook
	if hook == bpf.HookNone {
		hook = m.hook
	} else {
		ok, err := m.mechs[hook].present(h)
		if err == nil && ok {
			return nil
		}
		// What is left of it (a detached link, its pin) goes, and only
		// that: the hook is ebpfnet's to restore.
		_ = m.detachHook(a, d)
	}
	if err := m.attachHook(a, d, hook); err != nil {
		m.updateCounting(a)
		return err
	}
	m.updateCounting(a)
	m.reports.restored(a.Name, cause)
	return m.writeRow(a)
}

// Verify checks the interface's hooks and puts back any that are gone. It
// is what a notice from the kernel that a filter or qdisc went triggers.
func (m *Manager) Verify(index int, cause string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.byIndex[index]
	if a == nil || m.closed {
		return
	}
	m.verify(a, cause)
}

func (m *Manager) verify(a *attached, cause string) {
	var errs []error
	for _, d := range m.dirs {
		errs = append(errs, m.ensure(a, d, cause))
	}
	if err := errors.Join(errs...); err != nil {
		m.reports.fail(a.Index, a.Name, err)
	} else {
		m.reports.ok(a.Index)
	}
}

// pollLinks asks every tcx and XDP link whether it is still attached, and
// puts back those that are not; interfaces that are not counting (an
// earlier restore failed) are tried again.
func (m *Manager) pollLinks() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	for _, a := range m.byIndex {
		missing := !a.Counting
		for _, d := range m.dirs {
			h := a.holds[d]
			if mech, ok := m.mechs[h.hook]; ok && mech.linked() {
				if ok, err := mech.present(h); err == nil && !ok {
					missing = true
				}
			}
		}
		if missing {
			m.verify(a, "link detached")
		}
	}
}

// verifyTC checks every tc hook, after the kernel's notices were lost.
func (m *Manager) verifyTC(cause string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	for _, a := range m.byIndex {
		for _, h := range a.holds {
			if mech, ok := m.mechs[h.hook]; ok && !mech.linked() {
				m.verify(a, cause)
				break
			}
		}
	}
}

// healer runs the watch: a timer for the links, and the kernel's tc
// notices (RTNLGRP_TC: a filter or a qdisc deleted) for the filters.
type healer struct {
	done chan struct{}
	wake int // eventfd that ends the wait for notices
	wg   sync.WaitGroup
}

func (m *Manager) startHealer() error {
	h := &healer{done: make(chan struct{}), wake: -1}
	var tcfd int = -1
	if m.usesTC() {
		fd, err := subscribeTC()
		if err != nil {
			return err
		}
		tcfd = fd
		if h.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
			unix.Close(fd)
			return err
		}
	}
	m.healer = h
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer m.DetachOnPanic()
		t := time.NewTicker(PollInterval)
		defer t.Stop()
		for {
			select {
			case <-h.done:
				return
			case <-t.C:
				m.pollLinks()
			}
		}
	}()
	if tcfd >= 0 {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			defer m.DetachOnPanic()
			defer unix.Close(tcfd)
			m.watchTC(tcfd, h.wake)
		}()
	}
	return nil
}

func (h *healer) stop() {
	select {
	case <-h.done:
		return
	default:
		close(h.done)
	}
	if h.wake >= 0 {
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		_, _ = unix.Write(h.wake, one[:])
	}
	h.wg.Wait()
	if h.wake >= 0 {
		unix.Close(h.wake)
	}
}

// usesTC says whether tc filters may be held: tc mode, auto without tcx,
// or filters an earlier process pinned in auto mode.
func (m *Manager) usesTC() bool {
	return m.hook == bpf.HookTC || m.mode == "auto" || m.objs.Pinned()
}

// subscribeTC opens a netlink socket that hears of tc filters and qdiscs
// changing in this network namespace.
func subscribeTC() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (unix.RTNLGRP_TC - 1)}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	return fd, nil
}

// watchTC reads tc notices until wake is written, and checks the hooks of
// every interface a filter or a qdisc was deleted from.
func (m *Manager) watchTC(fd, wake int) {
	buf := make([]byte, 64<<10)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(wake), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if errors.Is(err, unix.EAGAIN) {
				break
			}
			if errors.Is(err, unix.ENOBUFS) {
				// Notices were lost: check every filter.
				m.verifyTC("tc filter or qdisc removed")
				continue
			}
			if err != nil {
				return
			}
			for index, cause := range tcDeletions(buf[:n]) {
				m.Verify(index, cause)
			}
		}
	}
}

// tcDeletions reads netlink messages and returns the interfaces a filter
// or a qdisc was deleted from, with what was deleted.
func tcDeletions(b []byte) map[int]string {
	out := map[int]string{}
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b[0:]))
		typ := binary.NativeEndian.Uint16(b[4:])
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			break
		}
		// struct tcmsg: family, pad (3 bytes), ifindex (int32), handle,
		// parent, info.
		if m := b[unix.NLMSG_HDRLEN:l]; len(m) >= 8 {
			index := int(int32(binary.NativeEndian.Uint32(m[4:])))
			switch typ {
			case unix.RTM_DELTFILTER:
				out[index] = "tc filter removed"
			case unix.RTM_DELQDISC:
				out[index] = "tc qdisc removed"
			}
		}
		b = b[min((l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1), len(b)):]
	}
	return out
}
