//go:build !linux

package receiver

import (
	"context"
	"fmt"
	"runtime"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver"
)

type ebpfScraper struct{}

func newScraper(*Config, receiver.Settings) (*ebpfScraper, error) {
	return nil, fmt.Errorf("the ebpfnet receiver counts with eBPF and needs Linux; this Collector runs on %s", runtime.GOOS)
}

func (*ebpfScraper) start(context.Context, component.Host) error { return nil }
func (*ebpfScraper) shutdown(context.Context) error              { return nil }
func (*ebpfScraper) scrape(context.Context) (pmetric.Metrics, error) {
	return pmetric.NewMetrics(), nil
}
