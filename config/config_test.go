package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
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
	} {
		if !errors.Is(err, want.kind) {
			t.Errorf("error does not wrap %v", want.kind)
		}
		if !strings.Contains(err.Error()+"\n", want.line+"\n") {
			t.Errorf("missing line %q in:\n%v", want.line, err)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 8 {
		t.Errorf("%d lines, want 8:\n%v", n, err)
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

	if cfg, err := LoadFile(write("")); err != nil || cfg.Attach != AttachAuto {
		t.Errorf("empty file: %+v, %v", cfg, err)
	}

	_, err = LoadFile(write("attach: tc\ninterfaces:\n  includes: [x]\ncolection_interval: 1s\n"))
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown keys: %v", err)
	}
	for _, line := range []string{`line 3: unknown key "interfaces.includes"`, `line 4: unknown key "colection_interval"`} {
		if !strings.Contains(err.Error(), line) {
			t.Errorf("missing %q in %v", line, err)
		}
	}

	if _, err := LoadFile(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}
