//go:build linux

package attach

import (
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/sys/unix"
)

// Values of the error.type attribute on ebpfnet.attach.errors.
const (
	ErrorMaxInterfaces = "max_interfaces" // refused: every row is used
	ErrorAttach        = "attach"         // the kernel refused a hook
	ErrorFileLimit     = "file_limit"     // out of file descriptors
)

// ErrorTypes are every error.type, exported from 0 so that an alert on
// their increase sees the first one.
var ErrorTypes = []string{ErrorMaxInterfaces, ErrorAttach, ErrorFileLimit}

// ErrFull is returned by Attach when max_interfaces interfaces are attached.
var ErrFull = errors.New("max_interfaces reached")

// reports counts and logs what went wrong, once per interface and cause,
// however often netlink repeats an interface's events (every change of an
// interface is one) and so retries it: a refusal is one refusal until the
// interface is attached or deleted, not one per event.
type reports struct {
	log      *slog.Logger
	counts   map[string]uint64 // by error.type
	failing  map[int]string    // by ifindex: the error last reported
	refused  map[int]bool      // ifindexes refused for want of a row
	restores uint64
	healed   map[string]bool // interface/cause pairs logged as restored
}

func newReports(log *slog.Logger) *reports {
	r := &reports{log: log, counts: map[string]uint64{}, failing: map[int]string{}, refused: map[int]bool{}, healed: map[string]bool{}}
	for _, typ := range ErrorTypes {
		r.counts[typ] = 0
	}
	return r
}

// refuse reports that the interface was not attached for want of a row.
func (r *reports) refuse(index int, name string) {
	if r.refused[index] {
		return
	}
	r.refused[index] = true
	r.counts[ErrorMaxInterfaces]++
	r.log.Warn("not counting interface: max_interfaces reached; counting it when a row is free", "interface", name)
}

// fail reports an attach error of the interface, unless it is the one
// reported last.
func (r *reports) fail(index int, name string, err error) {
	msg := err.Error()
	if r.failing[index] == msg {
		return
	}
	r.failing[index] = msg
	typ := ErrorAttach
	if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
		typ = ErrorFileLimit
	}
	r.counts[typ]++
	r.log.Warn("interface not counted", "interface", name, "error", err)
}

// ok clears what was reported of the interface: it is attached.
func (r *reports) ok(index int) {
	delete(r.failing, index)
	delete(r.refused, index)
}

// restored reports a hook someone else removed, put back: counted every
// time, logged once per interface and cause.
func (r *reports) restored(name, cause string) {
	r.restores++
	if key := name + "\x00" + cause; !r.healed[key] {
		r.healed[key] = true
		r.log.Warn("hook removed by someone else; restored it (logged once per interface and cause)", "interface", name, "cause", cause)
	}
}

// fileLimit names the limit an attach ran into, where it did.
func fileLimit(err error) error {
	if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
		var lim unix.Rlimit
		_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
		return fmt.Errorf("%w: the open-file limit (%d) is reached; ebpfnet holds a file descriptor for each tcx or XDP link, two per interface: raise it (ulimit -n, LimitNOFILE=) to more than twice max_interfaces", err, lim.Cur)
	}
	return err
}
