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

// MaxFileSize is the largest configuration file read: a real one is a few
// hundred bytes, and a mistaken path to a big file should fail at once.
const MaxFileSize = 1 << 20

// LoadFile reads a YAML configuration file over the defaults. Keys the
// schema does not know are errors, each naming the key and its line; so
// are a second YAML document, a number that is not a whole one where the
// schema wants one, and a file over MaxFileSize.
func LoadFile(name string) (Config, error) {
	cfg, _, err := LoadFileKeys(name)
	return cfg, err
}

// LoadFileKeys is LoadFile, and says which top-level keys the file set.
func LoadFileKeys(name string) (Config, map[string]bool, error) {
	cfg := Default()
	f, err := os.Open(name)
	if err != nil {
		return cfg, nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return cfg, nil, fmt.Errorf("config file: %w", err)
	}
	if len(b) > MaxFileSize {
		return cfg, nil, fmt.Errorf("config file %s: larger than %d KiB; is it the right file?", name, MaxFileSize>>10)
	}

	// The document as a tree first: what decoding into Config would let
	// pass silently.
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return cfg, map[string]bool{}, nil // an empty file keeps every default
	} else if err != nil {
		return cfg, nil, fmt.Errorf("config file %s: %w", name, rephrase(err.Error()))
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		line := more.Line
		if err != nil {
			return cfg, nil, fmt.Errorf("config file %s: %w", name, rephrase(err.Error()))
		}
		return cfg, nil, fmt.Errorf("config file %s: line %d: a second YAML document; ebpfnet reads one", name, line)
	}
	keys := map[string]bool{}
	if len(doc.Content) == 1 && doc.Content[0].Kind == yaml.MappingNode {
		m := doc.Content[0].Content
		for i := 0; i+1 < len(m); i += 2 {
			keys[m[i].Value] = true
			if v := m[i+1]; m[i].Value == "max_interfaces" && v.Kind == yaml.ScalarNode && v.ShortTag() != "!!int" {
				return cfg, nil, fmt.Errorf("config file %s: line %d: max_interfaces: want a whole number, got %q", name, v.Line, v.Value)
			}
		}
	}

	dec = yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err = dec.Decode(&cfg)
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var errs []error
		for _, e := range te.Errors {
			errs = append(errs, fmt.Errorf("config file %s: %w", name, rephrase(e)))
		}
		return cfg, nil, errors.Join(errs...)
	}
	if err != nil {
		return cfg, nil, fmt.Errorf("config file %s: %w", name, err)
	}
	return cfg, keys, nil
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
