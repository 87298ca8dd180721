// Package receiver is ebpfnet as an OpenTelemetry Collector metrics
// receiver: the same eBPF counters and the same metrics as the ebpfnet
// sidecar, scraped every collection_interval into the pipeline.
//
// It needs Linux (and root, or CAP_BPF and CAP_NET_ADMIN); elsewhere
// creating it fails with a clear error. See documentation.md for the metrics
// and README.md for adding it to a Collector built with the Builder.
package receiver

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/scraper"
	"go.opentelemetry.io/collector/scraper/scraperhelper"

	"github.com/ebpfnet/ebpfnet/config"
)

// Type is the receiver's component type, as written in a Collector's
// configuration: `receivers: ebpfnet:`.
var Type = component.MustNewType("ebpfnet")

// Stability of the metrics signal.
const Stability = component.StabilityLevelDevelopment

// NewFactory returns the ebpfnet receiver's factory.
func NewFactory() receiver.Factory {
	return receiver.NewFactory(Type, createDefaultConfig, receiver.WithMetrics(createMetrics, Stability))
}

func createDefaultConfig() component.Config {
	cc := scraperhelper.NewDefaultControllerConfig()
	cc.CollectionInterval = 10 * time.Second
	return &Config{ControllerConfig: cc, Config: config.Default()}
}

func createMetrics(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Metrics) (receiver.Metrics, error) {
	c := cfg.(*Config)
	s, err := newScraper(c, set)
	if err != nil {
		return nil, err
	}
	sc, err := scraper.NewMetrics(s.scrape, scraper.WithStart(s.start), scraper.WithShutdown(s.shutdown))
	if err != nil {
		return nil, err
	}
	return scraperhelper.NewMetricsController(&c.ControllerConfig, set, next, scraperhelper.AddMetricsScraper(Type, sc))
}
