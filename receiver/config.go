package receiver

import (
	"go.opentelemetry.io/collector/scraper/scraperhelper"

	"github.com/ebpfnet/ebpfnet/config"
)

// Config is the receiver's configuration: the scraper controller's keys
// (collection_interval, initial_delay, timeout) and ebpfnet's shared schema
// (interfaces, attach, directions, pin_path, max_interfaces), both at the
// top level of the receiver's block.
//
// The Collector validates it by calling Validate on each embedded part:
// config.Config.Validate is the very check the sidecar runs, so both front
// ends reject the same input with the same messages.
type Config struct {
	scraperhelper.ControllerConfig `mapstructure:",squash"`
	config.Config                  `mapstructure:",squash"`
}
