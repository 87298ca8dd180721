package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestDefaultIsValid(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m, err := cfg.Interfaces.Matcher()
	if err != nil {
		t.Fatal(err)
	}
	if !m.Match("enp0s3") || m.Match("lo") {
		t.Errorf("default selection: enp0s3 %v, lo %v", m.Match("enp0s3"), m.Match("lo"))
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := Config{
		Interfaces:    Interfaces{Include: []string{"[", "/(/"}, Exclude: []string{""}},
		Attach:        "bpf",
		Directions:    []string{"in", "receive", "receive"},
		PinPath:       "relative/dir",
		MaxInterfaces: 0,
		Pods:          Pods{CNICacheDir: "var/lib/cni"},
	}
	err := cfg.Validate()
	for _, want := range []struct {
		kind error
		line string
	}{
		{ErrPattern, `interfaces.include[0]: bad glob "[": syntax error in pattern`},
		{ErrPattern, "interfaces.include[1]: bad regular expression /(/: missing closing ): `^(?:()$`"},
		{ErrPattern, `interfaces.exclude[0]: empty pattern`},
		{ErrAttach, `attach: unknown mode "bpf" (want auto, tcx, tc or xdp)`},
		{ErrDirection, `directions[0]: unknown direction "in" (want receive or transmit)`},
		{ErrDirection, `directions[2]: "receive" is listed twice`},
		{ErrMaxInterfaces, `max_interfaces: must be between 1 and 65536, got 0`},
		{ErrPinPath, `pin_path: must be an absolute path, got "relative/dir"`},
		{ErrPods, `pods.cni_cache_dir: must be an absolute path, got "var/lib/cni"`},
	} {
		if !errors.Is(err, want.kind) {
			t.Errorf("error does not wrap %v", want.kind)
		}
		if !strings.Contains(err.Error()+"\n", want.line+"\n") {
			t.Errorf("missing line %q in:\n%v", want.line, err)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 9 {
		t.Errorf("%d lines, want 9:\n%v", n, err)
	}
}

func TestValidateOneLineEach(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(*Config)
		kind   error
		line   string
	}{
		"xdp transmit": {func(c *Config) { c.Attach = AttachXDP }, ErrXDPTransmit,
			"directions: xdp can only count receive: remove transmit, or use attach: tcx or tc"},
		"empty include": {func(c *Config) { c.Interfaces.Include = nil }, ErrPattern,
			`interfaces.include: is empty, so nothing would be counted (use ["*"] for every interface)`},
		"no directions": {func(c *Config) { c.Directions = nil }, ErrDirection,
			"directions: is empty (want receive, transmit or both)"},
		"too many interfaces": {func(c *Config) { c.MaxInterfaces = 70000 }, ErrMaxInterfaces,
			"max_interfaces: must be between 1 and 65536, got 70000"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := Default()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if !errors.Is(err, tc.kind) || err.Error() != tc.line {
				t.Errorf("got %v, want %q", err, tc.line)
			}
		})
	}
	xdp := Default()
	xdp.Attach, xdp.Directions = AttachXDP, []string{DirectionReceive}
	if err := xdp.Validate(); err != nil {
		t.Errorf("xdp receive only: %v", err)
	}
}

func TestMatcher(t *testing.T) {
	m, err := (&Interfaces{Include: []string{"veth*", "/eth[0-9]+/"}, Exclude: []string{"veth-skip*", "/eth1/"}}).Matcher()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"veth0": true, "vethabc": true, "veth-skip1": false, "eth7": true, "eth12": true,
		"eth1": false, "xeth0": false, "eth0x": false, "lo": false,
	} {
		if got := m.Match(name); got != want {
			t.Errorf("Match(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	cfg, err := LoadFile(write("interfaces:\n  include: [\"veth*\"]\nattach: tc\npin_path: /sys/fs/bpf/x\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Interfaces.Include, want.Attach, want.PinPath = []string{"veth*"}, AttachTC, "/sys/fs/bpf/x"
	if cfg.Attach != want.Attach || cfg.PinPath != want.PinPath || cfg.Interfaces.Include[0] != "veth*" ||
		cfg.Interfaces.Exclude[0] != "lo" || cfg.MaxInterfaces != 1024 || len(cfg.Directions) != 2 {
		t.Errorf("got %+v, want %+v", cfg, want)
	}

	for _, empty := range []string{"", "# nothing\n", "---\n", "~\n"} {
		if cfg, err := LoadFile(write(empty)); err != nil || cfg.Attach != AttachAuto {
			t.Errorf("empty file %q: %+v, %v", empty, cfg, err)
		}
	}

	path := write("attach: tc\ninterfaces:\n  includes: [x]\ncolection_interval: 1s\n")
	_, err = LoadFile(path)
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown keys: %v", err)
	}
	wantErr := "config file " + path + ": line 4: colection_interval: unknown key\n" +
		"config file " + path + ": line 3: interfaces.includes: unknown key"
	if err.Error() != wantErr {
		t.Errorf("got:\n%v\nwant:\n%s", err, wantErr)
	}

	// Metric names hold dots; the line is still the metric's own.
	path = write("attach: tc\nmetrics:\n  system.network.io: {enabled: false}\n  system.network.errors:\n    enabled: maybe\n  system.network.bytes: {}\n")
	_, err = LoadFile(path)
	wantErr = "config file " + path + ": line 6: metrics.system.network.bytes: unknown metric (the metrics are " + strings.Join(MetricNames, ", ") + ")\n" +
		"config file " + path + `: line 5: metrics.system.network.errors.enabled: want true or false, got the string "maybe"`
	if err == nil || err.Error() != wantErr {
		t.Errorf("got:\n%v\nwant:\n%s", err, wantErr)
	}

	if _, err := LoadFile(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

// Decode is the one decoder of both front ends: every problem at once,
// each naming its key, the xdp default, and null keeping a default.
func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  map[string]any
		errs []string
		ok   func(Config) bool
	}{
		{"defaults", nil, nil, func(c Config) bool { return c.Attach == AttachAuto && len(c.Directions) == 2 }},
		{"null keeps the default", map[string]any{"attach": nil, "interfaces": map[string]any{"exclude": nil}}, nil,
			func(c Config) bool { return c.Attach == AttachAuto && c.Interfaces.Exclude[0] == "lo" }},
		{"xdp counts receive unless told", map[string]any{"attach": "xdp"}, nil,
			func(c Config) bool { return len(c.Directions) == 1 && c.Directions[0] == DirectionReceive }},
		{"xdp with directions given keeps them", map[string]any{"attach": "xdp", "directions": []any{"receive", "transmit"}}, nil,
			func(c Config) bool { return len(c.Directions) == 2 }},
		{"confmap's map[any]any", map[string]any{"interfaces": map[any]any{"include": []any{"veth0"}}}, nil,
			func(c Config) bool { return c.Interfaces.Include[0] == "veth0" }},
		{"whole float", map[string]any{"max_interfaces": 64.0}, nil, func(c Config) bool { return c.MaxInterfaces == 64 }},
		{"wrong types", map[string]any{
			"attach": 3, "directions": "receive", "pin_path": []any{"/x"}, "max_interfaces": 1.5,
			"interfaces": map[string]any{"include": []any{"veth0", 7}, "exclude": "lo"},
		}, []string{
			"attach: want a string, got the number 3",
			"directions: want a list of strings, got the string \"receive\"",
			"interfaces.exclude: want a list of strings, got the string \"lo\"",
			"interfaces.include[1]: want a string, got the number 7",
			"max_interfaces: want a whole number, got 1.5",
			"pin_path: want a string, got a list",
		}, nil},
		{"unknown keys", map[string]any{"attach_mode": "tc", "interfaces": map[string]any{"includes": []any{"x"}}, "zzz": 1},
			[]string{"attach_mode: unknown key", "interfaces.includes: unknown key", "zzz: unknown key"}, nil},
		{"interfaces not a mapping", map[string]any{"interfaces": []any{"veth0"}}, []string{"interfaces: want a mapping of keys, got a list"}, nil},
		{"huge number", map[string]any{"max_interfaces": 1e300}, []string{"max_interfaces: want a whole number, got 1e+300"}, nil},
		{"pods", map[string]any{"pods": map[string]any{"enabled": false, "cni_cache_dir": "/run/cni"}}, nil,
			func(c Config) bool {
				return c.Pods.Enabled != nil && !*c.Pods.Enabled && c.Pods.CNICacheDir == "/run/cni"
			}},
		{"pods unset is on where the cache is", nil, nil, func(c Config) bool {
			return c.Pods.Enabled == nil && c.Pods.CNICacheDir == "/var/lib/cni" && c.Pods.On(func(string) bool { return true }) && !c.Pods.On(func(string) bool { return false })
		}},
		{"metrics switched off and on", map[string]any{"metrics": map[string]any{
			"system.network.errors": map[string]any{"enabled": false}, "k8s.pod.network.io": map[string]any{"enabled": true}}, "split_by": []any{}}, nil,
			func(c Config) bool {
				return !c.MetricEnabled("system.network.errors") && c.MetricEnabled("k8s.pod.network.io") && c.MetricEnabled("system.network.io") && len(c.SplitBy) == 0
			}},
		{"split_by unset splits by both", nil, nil, func(c Config) bool { return len(c.SplitBy) == 2 }},
		{"metrics wrong", map[string]any{"metrics": map[string]any{"system.network.bytes": map[string]any{"enabled": false},
			"system.network.io": map[string]any{"enabled": "no"}}, "split_by": "network.type"},
			[]string{`metrics.system.network.bytes: unknown metric (the metrics are system.network.io, system.network.packet.count, system.network.errors, system.network.packet.dropped, k8s.pod.network.io, k8s.pod.network.packet.count, k8s.pod.network.errors, k8s.pod.network.packet.dropped, ebpfnet.interfaces.attached, ebpfnet.attach.errors, ebpfnet.hooks.restored, ebpfnet.collection.duration)`, `metrics.system.network.io.enabled: want true or false, got the string "no"`,
				`split_by: want a list of strings, got the string "network.type"`}, nil},
		{"pods wrong", map[string]any{"pods": map[string]any{"enabled": "yes", "cache": "/x"}}, []string{`pods.cache: unknown key`, `pods.enabled: want true or false, got the string "yes"`}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Decode(tc.raw)
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if strings.Join(got, "\n") != strings.Join(tc.errs, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.errs, "\n"))
			}
			if keyed, other := KeyErrors(err); len(keyed) != len(tc.errs) || len(other) != 0 {
				t.Errorf("%d KeyErrors and %d others, want %d KeyErrors", len(keyed), len(other), len(tc.errs))
			}
			if tc.ok != nil && !tc.ok(cfg) {
				t.Errorf("decoded %+v", cfg)
			}
		})
	}
}

// Pin paths that would hide or share what is not ebpfnet's, and patterns
// that can never match an interface, are each one line naming the key.
func TestValidateRefusesWhatCannotWork(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		kind   error
		line   string
	}{
		{"pin path climbs", func(c *Config) { c.PinPath = "/sys/fs/bpf/x/../../etc" }, ErrPinPath,
			`pin_path: must not contain "..", got "/sys/fs/bpf/x/../../etc": name the directory itself`},
		{"pin path dot", func(c *Config) { c.PinPath = "/sys/fs/bpf/./x" }, ErrPinPath,
			`pin_path: must not contain ".", got "/sys/fs/bpf/./x": name the directory itself`},
		{"bpffs root", func(c *Config) { c.PinPath = "/sys/fs/bpf/" }, ErrPinPath,
			"pin_path: /sys/fs/bpf is shared by every BPF tool: use a directory of ebpfnet's own, such as /sys/fs/bpf/ebpfnet"},
		{"root", func(c *Config) { c.PinPath = "/" }, ErrPinPath,
			"pin_path: / is shared by every BPF tool: use a directory of ebpfnet's own, such as /sys/fs/bpf/ebpfnet"},
		{"split_by unknown", func(c *Config) { c.SplitBy = []string{"network.protocol.name"} }, ErrSplitBy,
			`split_by[0]: unknown attribute "network.protocol.name" (want network.type, network.transport, or both, or [] for none)`},
		{"split_by twice", func(c *Config) { c.SplitBy = []string{"network.type", "network.type"} }, ErrSplitBy,
			`split_by[1]: "network.type" is listed twice`},
		{"glob too long", func(c *Config) { c.Interfaces.Include = []string{"veth-of-my-long-pod*"} }, ErrPattern,
			`interfaces.include[0]: "veth-of-my-long-pod*" can never match an interface: it matches only names of 19 bytes or more, and interface names are at most 15`},
		{"glob with slash", func(c *Config) { c.Interfaces.Exclude = []string{"lo", "veth0/1"} }, ErrPattern,
			`interfaces.exclude[1]: "veth0/1" can never match an interface: interface names cannot contain '/'`},
		{"glob with space", func(c *Config) { c.Interfaces.Include = []string{"eth 0"} }, ErrPattern,
			`interfaces.include[0]: "eth 0" can never match an interface: interface names cannot contain ' '`},
		{"alias", func(c *Config) { c.Interfaces.Include = []string{"veth0:1"} }, ErrPattern,
			`interfaces.include[0]: "veth0:1" can never match an interface: interface names cannot contain ':'`},
		{"regexp too long", func(c *Config) { c.Interfaces.Include = []string{"/veth[0-9a-f]{16}/"} }, ErrPattern,
			`interfaces.include[0]: "/veth[0-9a-f]{16}/" can never match an interface: it matches only names of 20 bytes or more, and interface names are at most 15`},
		{"regexp literal with slash", func(c *Config) { c.Interfaces.Include = []string{"/eth0\\/1/"} }, ErrPattern,
			`interfaces.include[0]: "/eth0\\/1/" can never match an interface: interface names cannot contain '/'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if !errors.Is(err, tc.kind) || err.Error() != tc.line {
				t.Errorf("got %v\nwant %q", err, tc.line)
			}
		})
	}
	for _, ok := range []string{"*", "veth*", "/veth[0-9a-f]+/", "/.{15}/", "eth?", "[a-z]*", "/(eth|en).*/", "lxc[0-9a-f]*"} {
		cfg := Default()
		cfg.Interfaces.Include = []string{ok}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
}

// Files that never end, or are no files at all, are refused before they are
// read, instead of hanging the start.
func TestReadRegularRefusesWhatNeverEnds(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		fifo:        fifo + " is a FIFO, not a regular file",
		"/dev/zero": "/dev/zero is a character device, not a regular file",
		dir:         dir + " is a directory, not a regular file",
		big:         big + " is larger than 1024 KiB; is it the right file?",
	} {
		if _, err := ReadRegular(path, MaxFileSize); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", path, err, want)
		}
		if _, err := ReadFile(path); err == nil || err.Error() != "config file: "+want {
			t.Errorf("config file %s: %v", path, err)
		}
	}
}
