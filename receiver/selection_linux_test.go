package receiver

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/ebpfnet/ebpfnet/internal/otlptest"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// Every split_by choice, and metrics switched off, on the same traffic at
// once: one receiver per choice on the same interface (each loads its own
// counters), each exact against the frames sent and the kernel's counters.
func TestSplitByAndSwitchesOnTheKernel(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "split0")
	testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
	kbase := testenv.LinkStats(t, p.Local)

	choices := [][]string{{}, {"network.type"}, {"network.transport"}, {"network.type", "network.transport"}}
	type run struct {
		by   []string
		sink *consumertest.MetricsSink
	}
	var runs []run
	start := func(block map[string]any) *consumertest.MetricsSink {
		t.Helper()
		f := NewFactory()
		cfg := f.CreateDefaultConfig().(*Config)
		block["interfaces"] = map[string]any{"include": []any{p.Local}}
		block["collection_interval"] = "100ms"
		if err := confmap.NewFromStringMap(block).Unmarshal(cfg); err != nil {
			t.Fatal(err)
		}
		sink := new(consumertest.MetricsSink)
		r, err := f.CreateMetrics(context.Background(), receivertest.NewNopSettings(Type), cfg, sink)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(context.Background(), componenttest.NewNopHost()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := r.Shutdown(context.Background()); err != nil {
				t.Error(err)
			}
		})
		return sink
	}
	for _, by := range choices {
		list := make([]any, len(by))
		for i, a := range by {
			list[i] = a
		}
		runs = append(runs, run{by, start(map[string]any{"split_by": list})})
	}
	switched := start(map[string]any{"metrics": map[string]any{
		"system.network.io":           map[string]any{"enabled": false},
		"ebpfnet.collection.duration": map[string]any{"enabled": false},
		"system.network.errors":       map[string]any{"enabled": true},
	}})
	for _, r := range append(runs, run{nil, switched}) {
		lastValues(t, r.sink, func(v map[string]int64) bool { return v[otlptest.Key("ebpfnet.interfaces.attached")] == 1 })
	}

	sent := otlptest.SendKnown(t, p)
	k := testenv.LinkStats(t, p.Local).Sub(kbase)
	for _, r := range runs {
		t.Run(fmt.Sprint(r.by), func(t *testing.T) {
			want := otlptest.Merge(sent, r.by)
			lastValues(t, r.sink, func(v map[string]int64) bool { return otlptest.Matches(v, p.Local, want, k) })
		})
	}
	t.Run("switches", func(t *testing.T) {
		v, md := lastValues(t, switched, func(v map[string]int64) bool {
			return otlptest.Totals(v, otlptest.PacketsMetric, p.Local, "receive") == int64(k.RxPackets) &&
				otlptest.Totals(v, otlptest.PacketsMetric, p.Local, "transmit") == int64(k.TxPackets)
		})
		for key := range v {
			if strings.HasPrefix(key, otlptest.BytesMetric+"{") {
				t.Errorf("system.network.io is switched off, yet %s", key)
			}
		}
		names := map[string]bool{}
		for _, m := range otlptest.Metrics(md) {
			names[m.Name()] = true
		}
		for name, want := range map[string]bool{"system.network.io": false, "ebpfnet.collection.duration": false,
			"system.network.errors": true, "system.network.packet.count": true, "ebpfnet.interfaces.attached": true} {
			if names[name] != want {
				t.Errorf("%s made: %v, want %v", name, names[name], want)
			}
		}
	})
}
