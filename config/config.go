// Package config is ebpfnet's one configuration schema, shared by the
// Collector receiver (as mapstructure keys) and the sidecar (as a YAML file),
// with its defaults and its validation. Validate runs before anything is
// loaded into the kernel.
package config

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Config selects the interfaces ebpfnet counts on and how it attaches.
type Config struct {
	// Interfaces selects interfaces by name.
	Interfaces Interfaces `mapstructure:"interfaces" yaml:"interfaces"`
	// Attach is the hook: auto (tcx where the kernel has it, else tc), tcx
	// (kernel 6.6+), tc (clsact qdisc with a direct-action filter) or xdp
	// (receive only).
	Attach string `mapstructure:"attach" yaml:"attach"`
	// Directions to count: receive (ingress) and/or transmit (egress).
	Directions []string `mapstructure:"directions" yaml:"directions"`
	// PinPath, when set, is a directory on a BPF filesystem where counters
	// and attachments are pinned, so they outlive restarts of ebpfnet.
	PinPath string `mapstructure:"pin_path" yaml:"pin_path"`
	// MaxInterfaces bounds how many interfaces are attached (and so the
	// metrics' cardinality); interfaces beyond it are reported, not counted.
	MaxInterfaces int `mapstructure:"max_interfaces" yaml:"max_interfaces"`
	// Pods names the host ends of pods' networks by their pods, on a
	// Kubernetes node, from the container runtime's CNI result cache.
	Pods Pods `mapstructure:"pods" yaml:"pods"`
	// Metrics switches metrics off or on, by name, in the shape of the
	// Collector's mdatagen metrics blocks; every metric is on by default.
	Metrics map[string]MetricSettings `mapstructure:"metrics" yaml:"metrics,omitempty"`
	// SplitBy are the class attributes the traffic metrics keep, of
	// network.type and network.transport: [] counts per interface and
	// direction only. Sums stay exact: classes merge before any point is
	// made.
	SplitBy []string `mapstructure:"split_by" yaml:"split_by"`
}

// MetricSettings switch one metric.
type MetricSettings struct {
	Enabled bool `mapstructure:"enabled" yaml:"enabled"`
}

// The class attributes split_by may keep.
const (
	SplitNetworkType = "network.type"
	SplitTransport   = "network.transport"
)

// MetricNames are the metrics the metrics block may name (internal/metrics
// holds their definitions; a test keeps the two lists one).
var MetricNames = []string{
	"system.network.io", "system.network.packet.count", "system.network.errors", "system.network.packet.dropped",
	"k8s.pod.network.io", "k8s.pod.network.packet.count", "k8s.pod.network.errors", "k8s.pod.network.packet.dropped",
	"ebpfnet.interfaces.attached", "ebpfnet.attach.errors", "ebpfnet.hooks.restored", "ebpfnet.collection.duration",
}

// MetricEnabled says whether the named metric is made.
func (c *Config) MetricEnabled(name string) bool {
	m, ok := c.Metrics[name]
	return !ok || m.Enabled
}

// Pods says whether and where to read which pod each interface belongs to.
type Pods struct {
	// Enabled: true, false, or unset (nil): on where CNICacheDir exists.
	Enabled *bool `mapstructure:"enabled" yaml:"enabled"`
	// CNICacheDir is libcni's cache directory, whose results/ the runtime
	// (containerd, CRI-O) writes; libcni's default unless set.
	CNICacheDir string `mapstructure:"cni_cache_dir" yaml:"cni_cache_dir"`
}

// DefaultCNICacheDir is libcni's cache directory.
const DefaultCNICacheDir = "/var/lib/cni"

// On says whether pods are named: as configured, else where the cache
// directory exists.
func (p Pods) On(exists func(dir string) bool) bool {
	if p.Enabled != nil {
		return *p.Enabled
	}
	return exists(p.CNICacheDir)
}

// Interfaces are shell globs, or regular expressions written /like this/
// and matched against the whole name. An interface is counted when it
// matches an include pattern and no exclude pattern.
type Interfaces struct {
	Include []string `mapstructure:"include" yaml:"include"`
	Exclude []string `mapstructure:"exclude" yaml:"exclude"`
}

// Attach modes.
const (
	AttachAuto = "auto"
	AttachTCX  = "tcx"
	AttachTC   = "tc"
	AttachXDP  = "xdp"
)

// Directions.
const (
	DirectionReceive  = "receive"
	DirectionTransmit = "transmit"
)

// MaxInterfacesLimit is the largest max_interfaces accepted.
const MaxInterfacesLimit = 65536

// Default returns the configuration used where a key is not set.
func Default() Config {
	return Config{
		Interfaces:    Interfaces{Include: []string{"*"}, Exclude: []string{"lo"}},
		Attach:        AttachAuto,
		Directions:    []string{DirectionReceive, DirectionTransmit},
		MaxInterfaces: 1024,
		Pods:          Pods{CNICacheDir: DefaultCNICacheDir},
		SplitBy:       []string{SplitNetworkType, SplitTransport},
	}
}

// Sentinel errors, one for each kind of problem Validate reports.
var (
	ErrPattern       = errors.New("bad interface pattern")
	ErrAttach        = errors.New("unknown attach mode")
	ErrDirection     = errors.New("bad direction")
	ErrXDPTransmit   = errors.New("xdp cannot count transmit")
	ErrMaxInterfaces = errors.New("max_interfaces out of range")
	ErrPinPath       = errors.New("bad pin_path")
	ErrPods          = errors.New("bad pods setting")
	ErrSplitBy       = errors.New("bad split_by")
)

// Validate reports every problem in c at once, one line each, each naming
// its key.
func (c *Config) Validate() error {
	var errs []error
	for _, list := range []struct {
		key      string
		patterns []string
	}{{"interfaces.include", c.Interfaces.Include}, {"interfaces.exclude", c.Interfaces.Exclude}} {
		for i, p := range list.patterns {
			if _, err := compile(p); err != nil {
				errs = append(errs, problem(ErrPattern, fmt.Sprintf("%s[%d]", list.key, i), "%v", err))
			} else if why := neverMatches(p); why != "" {
				errs = append(errs, problem(ErrPattern, fmt.Sprintf("%s[%d]", list.key, i), "%q can never match an interface: %s", p, why))
			}
		}
	}
	if len(c.Interfaces.Include) == 0 {
		errs = append(errs, problem(ErrPattern, "interfaces.include", `is empty, so nothing would be counted (use ["*"] for every interface)`))
	}

	switch c.Attach {
	case AttachAuto, AttachTCX, AttachTC, AttachXDP:
	default:
		errs = append(errs, problem(ErrAttach, "attach", "unknown mode %q (want auto, tcx, tc or xdp)", c.Attach))
	}

	if len(c.Directions) == 0 {
		errs = append(errs, problem(ErrDirection, "directions", "is empty (want receive, transmit or both)"))
	}
	for i, d := range c.Directions {
		switch {
		case d != DirectionReceive && d != DirectionTransmit:
			errs = append(errs, problem(ErrDirection, fmt.Sprintf("directions[%d]", i), "unknown direction %q (want receive or transmit)", d))
		case slices.Index(c.Directions, d) != i:
			errs = append(errs, problem(ErrDirection, fmt.Sprintf("directions[%d]", i), "%q is listed twice", d))
		}
	}
	if c.Attach == AttachXDP && slices.Contains(c.Directions, DirectionTransmit) {
		errs = append(errs, problem(ErrXDPTransmit, "directions", "xdp can only count receive: remove transmit, or use attach: tcx or tc"))
	}

	if c.MaxInterfaces < 1 || c.MaxInterfaces > MaxInterfacesLimit {
		errs = append(errs, problem(ErrMaxInterfaces, "max_interfaces", "must be between 1 and %d, got %d", MaxInterfacesLimit, c.MaxInterfaces))
	}
	if err := checkPinPath(c.PinPath); err != nil {
		errs = append(errs, err)
	}
	for i, a := range c.SplitBy {
		switch {
		case a != SplitNetworkType && a != SplitTransport:
			errs = append(errs, problem(ErrSplitBy, fmt.Sprintf("split_by[%d]", i), "unknown attribute %q (want network.type, network.transport, or both, or [] for none)", a))
		case slices.Index(c.SplitBy, a) != i:
			errs = append(errs, problem(ErrSplitBy, fmt.Sprintf("split_by[%d]", i), "%q is listed twice", a))
		}
	}
	if !filepath.IsAbs(c.Pods.CNICacheDir) {
		errs = append(errs, problem(ErrPods, "pods.cni_cache_dir", "must be an absolute path, got %q", c.Pods.CNICacheDir))
	}
	return errors.Join(errs...)
}

// checkPinPath refuses a pin path that would mix ebpfnet's pins with what
// is not its own: a relative one, one that climbs with .., and the BPF
// filesystem's root, where other tools pin theirs. (Load refuses the root
// of any BPF filesystem, wherever it is mounted.)
func checkPinPath(p string) error {
	if p == "" {
		return nil
	}
	if !filepath.IsAbs(p) {
		return problem(ErrPinPath, "pin_path", "must be an absolute path, got %q", p)
	}
	for _, e := range strings.Split(p, "/") {
		if e == ".." || e == "." {
			return problem(ErrPinPath, "pin_path", "must not contain %q, got %q: name the directory itself", e, p)
		}
	}
	switch filepath.Clean(p) {
	case "/", DefaultBPFFS:
		return problem(ErrPinPath, "pin_path", "%s is shared by every BPF tool: use a directory of ebpfnet's own, such as %s/ebpfnet", filepath.Clean(p), DefaultBPFFS)
	}
	return nil
}

// DefaultBPFFS is where a BPF filesystem is conventionally mounted.
const DefaultBPFFS = "/sys/fs/bpf"

// Matcher decides which interface names are selected.
type Matcher struct {
	include, exclude []func(string) bool
}

// Matcher compiles c's patterns. Call it on a validated Config.
func (c *Interfaces) Matcher() (*Matcher, error) {
	m := &Matcher{}
	for _, list := range []struct {
		dst      *[]func(string) bool
		patterns []string
	}{{&m.include, c.Include}, {&m.exclude, c.Exclude}} {
		for _, p := range list.patterns {
			f, err := compile(p)
			if err != nil {
				return nil, err
			}
			*list.dst = append(*list.dst, f)
		}
	}
	return m, nil
}

// Match reports whether name is included and not excluded.
func (m *Matcher) Match(name string) bool {
	any := func(fs []func(string) bool) bool {
		return slices.ContainsFunc(fs, func(f func(string) bool) bool { return f(name) })
	}
	return any(m.include) && !any(m.exclude)
}

func compile(p string) (func(string) bool, error) {
	if isRegexp(p) {
		re, err := regexp.Compile("^(?:" + p[1:len(p)-1] + ")$")
		if err != nil {
			return nil, fmt.Errorf("bad regular expression %s: %v", p, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		}
		return re.MatchString, nil
	}
	if p == "" {
		return nil, errors.New("empty pattern")
	}
	if _, err := path.Match(p, ""); err != nil {
		return nil, fmt.Errorf("bad glob %q: %v", p, err)
	}
	return func(name string) bool { ok, _ := path.Match(p, name); return ok }, nil
}
