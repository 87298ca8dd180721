package receiver

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/ebpfnet/ebpfnet/config"
)

func load(t *testing.T, name string) (*Config, error) {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	id := component.NewID(Type)
	if name != "" {
		id = component.NewIDWithName(Type, name)
	}
	sub, err := cm.Sub(id.String())
	if err != nil {
		t.Fatal(err)
	}
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	if err := sub.Unmarshal(cfg); err != nil {
		return nil, err
	}
	return cfg, confmap.Validate(cfg)
}

func TestDefaultConfig(t *testing.T) {
	cfg, err := load(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CollectionInterval != 10*time.Second {
		t.Errorf("collection_interval %v", cfg.CollectionInterval)
	}
	def := config.Default()
	if cfg.Attach != def.Attach || cfg.MaxInterfaces != def.MaxInterfaces || cfg.PinPath != "" ||
		strings.Join(cfg.Interfaces.Include, ",") != "*" || strings.Join(cfg.Interfaces.Exclude, ",") != "lo" ||
		strings.Join(cfg.Directions, ",") != "receive,transmit" {
		t.Errorf("defaults: %+v", cfg.Config)
	}
}

func TestCustomConfig(t *testing.T) {
	cfg, err := load(t, "custom")
	if err != nil {
		t.Fatal(err)
	}
	want := config.Config{
		Interfaces:    config.Interfaces{Include: []string{"veth*", "/eth[0-9]+/"}, Exclude: []string{"veth-skip*"}},
		Attach:        config.AttachTC,
		Directions:    []string{config.DirectionReceive},
		PinPath:       "/sys/fs/bpf/ebpfnet",
		MaxInterfaces: 256,
	}
	if cfg.CollectionInterval != 2*time.Second {
		t.Errorf("collection_interval %v", cfg.CollectionInterval)
	}
	if strings.Join(cfg.Interfaces.Include, "|") != strings.Join(want.Interfaces.Include, "|") ||
		strings.Join(cfg.Interfaces.Exclude, "|") != strings.Join(want.Interfaces.Exclude, "|") ||
		cfg.Attach != want.Attach || strings.Join(cfg.Directions, ",") != "receive" ||
		cfg.PinPath != want.PinPath || cfg.MaxInterfaces != want.MaxInterfaces {
		t.Errorf("got %+v, want %+v", cfg.Config, want)
	}
}

// attach: xdp alone counts receive, as in the sidecar: the rule is the
// shared decoder's.
func TestXDPCountsReceive(t *testing.T) {
	cfg, err := load(t, "xdp")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Directions, ",") != "receive" {
		t.Errorf("directions %v", cfg.Directions)
	}
}

// Every invalid case is rejected with the shared schema's own message,
// naming the key, the same the sidecar prints.
func TestInvalidConfigs(t *testing.T) {
	for name, want := range map[string]struct {
		kind error
		msg  string
	}{
		"bad_glob":       {config.ErrPattern, `interfaces.include[1]: bad glob "[": syntax error in pattern`},
		"xdp_transmit":   {config.ErrXDPTransmit, "directions: xdp can only count receive: remove transmit, or use attach: tcx or tc"},
		"unknown_attach": {config.ErrAttach, `attach: unknown mode "sockops" (want auto, tcx, tc or xdp)`},
		"bad_direction":  {config.ErrDirection, `directions[0]: unknown direction "inbound" (want receive or transmit)`},
		"zero_interval":  {nil, `"collection_interval": requires positive value`},
		"unknown_key":    {config.ErrUnknownKey, "attach_mode: unknown key"},
		"wrong_type":     {config.ErrType, `max_interfaces: want a whole number, got the string "many"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := load(t, name)
			if err == nil {
				t.Fatal("accepted")
			}
			if want.kind != nil && !errors.Is(err, want.kind) {
				t.Errorf("%v does not wrap %v", err, want.kind)
			}
			if !strings.Contains(err.Error(), want.msg) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, want.msg)
			}
			// Decoding errors come framed by the Collector ("decoding
			// failed due to the following error(s): ..."), as any
			// component's do; validation errors are ours alone.
			decoding := errors.Is(err, config.ErrUnknownKey) || errors.Is(err, config.ErrType)
			if n := strings.Count(strings.TrimSpace(err.Error()), "\n"); want.kind != nil && !decoding && n != 0 {
				t.Errorf("%d lines, want one:\n%v", n+1, err)
			}
		})
	}
}
