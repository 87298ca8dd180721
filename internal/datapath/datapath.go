//go:build linux

// Package datapath is ebpfnet's core, the one both front ends call: from a
// validated configuration it loads the program's maps, attaches to the
// selected interfaces and keeps following them, and reads snapshots.
package datapath

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/config"
	"github.com/ebpfnet/ebpfnet/internal/attach"
	"github.com/ebpfnet/ebpfnet/internal/ifwatch"
	"github.com/ebpfnet/ebpfnet/internal/pods"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
)

// Datapath counts on the selected interfaces until Close.
type Datapath struct {
	objs    *bpf.Objects
	mgr     *attach.Manager
	watcher *ifwatch.Watcher
	pods    *pods.Index // nil: pods are not named

	mu     sync.Mutex // serialises reads: the reader reuses its buffers
	reader *snapshot.Reader
	closed bool
}

// Open validates cfg, checks privileges, and only then loads and attaches.
// Errors attaching to individual interfaces are logged and counted, not
// returned: the other interfaces are still counted.
func Open(cfg config.Config, log *slog.Logger) (*Datapath, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	match, err := cfg.Interfaces.Matcher()
	if err != nil {
		return nil, err
	}
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	if err := checkLimits(cfg, log); err != nil {
		return nil, err
	}

	// Where the kernel still charges BPF memory to RLIMIT_MEMLOCK (before
	// 5.11), lift it; elsewhere this does nothing.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise RLIMIT_MEMLOCK for BPF maps: %w", err)
	}
	d := &Datapath{}
	d.objs, err = bpf.Load(bpf.Options{
		MaxInterfaces: cfg.MaxInterfaces,
		PinPath:       cfg.PinPath,
		Programs:      attach.Programs(cfg.Attach, cfg.Directions),
	})
	if err != nil {
		// One line: the verifier's last words. The whole log is for
		// those who ask for it.
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			log.Debug("verifier log", "log", fmt.Sprintf("%+v", ve))
		}
		return nil, err
	}
	d.mgr, err = attach.New(d.objs, attach.Options{
		Mode:       cfg.Attach,
		Directions: cfg.Directions,
		Logger:     log,
	})
	if err != nil {
		d.objs.Close()
		return nil, err
	}
	var (
		peers ifwatch.Peers
		podOf func(int) *pods.Pod
	)
	if cfg.Pods.On(isDir) {
		if d.pods, err = pods.Watch(cfg.Pods.CNICacheDir, log); err != nil {
			d.Close()
			return nil, err
		}
		peers, podOf = d.pods, d.pods.Pod
	}
	// The reader's socket before the interfaces take their file
	// descriptors (a tcx or XDP link is one): out of them, ebpfnet still
	// reads what it could attach.
	if d.reader, err = snapshot.NewReader(d.objs, podOf); err != nil {
		d.Close()
		return nil, err
	}
	if d.watcher, err = ifwatch.Watch(d.mgr, match, peers, log); err != nil {
		d.Close()
		return nil, fmt.Errorf("watch interfaces: %w", err)
	}
	return d, nil
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// NamesPods says whether interfaces are named by their pods.
func (d *Datapath) NamesPods() bool { return d.pods != nil }

// AttachMode is the attach mode in use: tcx, tc or xdp (auto resolved).
func (d *Datapath) AttachMode() string { return d.mgr.Mode() }

// Snapshot reads every attached interface's counters into dst.
func (d *Datapath) Snapshot(dst *snapshot.Snapshot) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("snapshot: datapath closed")
	}
	return d.reader.Read(d.mgr, dst)
}

// Abandon detaches what is not pinned, now, without waiting for anything:
// for a process about to die of a panic, which would otherwise leave its tc
// filters running with nobody to remove them.
func (d *Datapath) Abandon() { d.mgr.Abandon() }

// Close stops following interfaces and detaches, except what is pinned,
// which goes on counting. It is idempotent.
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	if d.watcher != nil {
		d.watcher.Close()
	}
	if d.reader != nil {
		d.reader.Close()
	}
	if d.pods != nil {
		d.pods.Close()
	}
	return errors.Join(d.mgr.Close(), d.objs.Close())
}
