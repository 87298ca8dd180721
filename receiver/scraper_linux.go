package receiver

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver"
	"go.uber.org/zap/exp/zapslog"

	"github.com/ebpfnet/ebpfnet/internal/datapath"
	"github.com/ebpfnet/ebpfnet/internal/metrics"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
)

// ebpfScraper runs the shared core: it opens the datapath on start, turns
// one snapshot per scrape into pdata, and closes the datapath on shutdown.
type ebpfScraper struct {
	cfg *Config
	log *slog.Logger

	mu      sync.Mutex
	d       *datapath.Datapath
	sel     metrics.Selection
	snap    snapshot.Snapshot
	started time.Time
}

func newScraper(cfg *Config, set receiver.Settings) (*ebpfScraper, error) {
	return &ebpfScraper{cfg: cfg, sel: metrics.NewSelection(cfg.Config), log: slog.New(zapslog.NewHandler(set.Logger.Core()))}, nil
}

func (s *ebpfScraper) start(context.Context, component.Host) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := datapath.Open(s.cfg.Config, s.log)
	if err != nil {
		return err
	}
	s.d, s.started = d, time.Now()
	return nil
}

// shutdown detaches (unless pinned). It is safe without start, and twice.
func (s *ebpfScraper) shutdown(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.d == nil {
		return nil
	}
	err := s.d.Close()
	s.d = nil
	return err
}

func (s *ebpfScraper) scrape(context.Context) (pmetric.Metrics, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.d == nil {
		return pmetric.NewMetrics(), errors.New("ebpfnet: scrape before start")
	}
	begin := time.Now()
	if err := s.d.Snapshot(&s.snap); err != nil {
		return pmetric.NewMetrics(), err
	}
	return toMetrics(&s.snap, s.sel, s.started, pcommon.NewTimestampFromTime(s.snap.Time), time.Since(begin)), nil
}
