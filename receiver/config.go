package receiver

import (
	"errors"

	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/scraper/scraperhelper"

	"github.com/ebpfnet/ebpfnet/config"
)

// Config is the receiver's configuration: the scraper controller's keys
// (collection_interval, initial_delay, timeout) and ebpfnet's shared schema
// (interfaces, attach, directions, pin_path, max_interfaces), both at the
// top level of the receiver's block.
//
// ebpfnet's keys are decoded by config.Decode and checked by
// config.Config.Validate, the very decoder and checks the sidecar runs on
// its file: both front ends take the same input and reject the same
// mistakes with the same messages.
type Config struct {
	scraperhelper.ControllerConfig `mapstructure:",squash"`
	config.Config                  `mapstructure:",squash"`
}

// controllerKeys are the scraper controller's keys; every other key of the
// block is ebpfnet's.
var controllerKeys = map[string]bool{"collection_interval": true, "initial_delay": true, "timeout": true}

// Unmarshal decodes the block: the controller's keys as the Collector
// decodes them, ebpfnet's with config.Decode.
func (c *Config) Unmarshal(conf *confmap.Conf) error {
	ours, controller := map[string]any{}, map[string]any{}
	for k, v := range conf.ToStringMap() {
		if controllerKeys[k] {
			controller[k] = v
		} else {
			ours[k] = v
		}
	}
	cfg, err := config.Decode(ours)
	c.Config = cfg
	return errors.Join(confmap.NewFromStringMap(controller).Unmarshal(&c.ControllerConfig), err)
}
