//go:build linux

package attach

import (
	"errors"
	"time"

	"github.com/ebpfnet/ebpfnet/bpf"
)

// Close stops watching the hooks and detaches everything, unless it is
// pinned: then it only lets go, and the pinned links keep counting. Close
// is idempotent.
func (m *Manager) Close() error {
	if m.healer != nil {
		m.healer.stop()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	var errs []error
	for _, a := range m.byIndex {
		for d, h := range a.holds {
			if m.objs.Pinned() {
				errs = append(errs, h.closeLink())
				continue
			}
			errs = append(errs, m.detachHook(a, bpf.Direction(d)))
		}
	}
	return errors.Join(errs...)
}

// DetachOnPanic, deferred at the top of a goroutine, detaches what is not
// pinned when that goroutine panics, and lets the panic go on: a tc filter
// is not tied to the process that added it, and would go on running with
// no process behind it. (After SIGKILL nothing can do that: see README.)
func (m *Manager) DetachOnPanic() {
	if r := recover(); r != nil {
		m.Abandon()
		panic(r)
	}
}

// Abandon detaches what is not pinned, as Close does, without waiting for
// the goroutines that watch the hooks: the process is about to die, maybe
// from one of them.
func (m *Manager) Abandon() {
	// Whoever holds the lock gets a moment to let go; past that, the
	// process is dying anyway.
	for i := 0; i < 100; i++ {
		if m.mu.TryLock() {
			defer m.mu.Unlock()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m.closed {
		return
	}
	m.closed = true
	if m.objs.Pinned() {
		return
	}
	for _, a := range m.byIndex {
		for d := range a.holds {
			_ = m.detachHook(a, bpf.Direction(d))
		}
	}
}
