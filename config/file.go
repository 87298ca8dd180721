package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrUnknownKey is a key the schema does not have.
var ErrUnknownKey = errors.New("unknown key")

// LoadFile reads a YAML configuration file over the defaults. Keys the
// schema does not know are errors, each naming the key and its line.
func LoadFile(name string) (Config, error) {
	cfg := Default()
	b, err := os.ReadFile(name)
	if err != nil {
		return cfg, fmt.Errorf("config file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err = dec.Decode(&cfg)
	if errors.Is(err, io.EOF) {
		return cfg, nil // an empty file keeps every default
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var errs []error
		for _, e := range te.Errors {
			errs = append(errs, fmt.Errorf("config file %s: %w", name, rephrase(e)))
		}
		return cfg, errors.Join(errs...)
	}
	if err != nil {
		return cfg, fmt.Errorf("config file %s: %w", name, err)
	}
	return cfg, nil
}

var unknownField = regexp.MustCompile(`^(line \d+): field (\S+) not found in type config\.(\w+)$`)

// rephrase turns yaml.v3's "field x not found in type config.Interfaces"
// into the key as the user wrote it: "unknown key interfaces.x".
func rephrase(msg string) error {
	m := unknownField.FindStringSubmatch(msg)
	if m == nil {
		return errors.New(strings.TrimPrefix(msg, "yaml: "))
	}
	key := m[2]
	if m[3] == "Interfaces" {
		key = "interfaces." + key
	}
	return fmt.Errorf("%s: %w %q", m[1], ErrUnknownKey, key)
}
