package receiver

import (
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ebpfnet/ebpfnet/internal/metrics"
)

// metadata.yaml (mdatagen's shape) and documentation.md say what
// internal/metrics, the one definition both front ends follow, says:
// every metric, with its unit, description, instrument and attributes.
func TestMetadataAgreesWithTheDefinitions(t *testing.T) {
	b, err := os.ReadFile("metadata.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var md struct {
		Attributes map[string]any `yaml:"attributes"`
		Metrics    map[string]struct {
			Enabled     bool   `yaml:"enabled"`
			Description string `yaml:"description"`
			Unit        string `yaml:"unit"`
			Sum         *struct {
				ValueType   string `yaml:"value_type"`
				Monotonic   bool   `yaml:"monotonic"`
				Temporality string `yaml:"aggregation_temporality"`
			} `yaml:"sum"`
			Gauge *struct {
				ValueType string `yaml:"value_type"`
			} `yaml:"gauge"`
			Attributes []string `yaml:"attributes"`
		} `yaml:"metrics"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&md); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("documentation.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, def := range metrics.All {
		seen[def.Name] = true
		m, ok := md.Metrics[def.Name]
		if !ok {
			t.Errorf("%s is not in metadata.yaml", def.Name)
			continue
		}
		kind := "?"
		switch {
		case m.Sum != nil && m.Sum.ValueType == "int" && m.Sum.Monotonic && m.Sum.Temporality == "cumulative":
			kind = "counter"
		case m.Gauge != nil && m.Gauge.ValueType == "int":
			kind = "gauge"
		case m.Gauge != nil && m.Gauge.ValueType == "double":
			kind = "floatgauge"
		}
		want := map[metrics.Kind]string{metrics.Counter: "counter", metrics.Gauge: "gauge", metrics.FloatGauge: "floatgauge"}[def.Kind]
		var attrs []string
		for _, k := range def.Attributes {
			attrs = append(attrs, string(k))
			if _, ok := md.Attributes[string(k)]; !ok {
				t.Errorf("%s: attribute %s is not described in metadata.yaml", def.Name, k)
			}
		}
		if !m.Enabled || m.Description != def.Description || m.Unit != def.Unit || kind != want || !slices.Equal(m.Attributes, attrs) {
			t.Errorf("metadata.yaml's %s differs from internal/metrics':\n %+v\nwant %s %q %q %v", def.Name, m, want, def.Unit, def.Description, attrs)
		}
		if !strings.Contains(string(doc), "### "+def.Name+"\n") {
			t.Errorf("documentation.md has no section for %s", def.Name)
		}
	}
	for name := range md.Metrics {
		if !seen[name] {
			t.Errorf("metadata.yaml has %s, which no front end makes", name)
		}
	}
}
