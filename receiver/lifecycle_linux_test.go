package receiver

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/goleak"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/internal/otlptest"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

func TestMain(m *testing.M) {
	run := func() int {
		code := m.Run()
		if code == 0 {
			if err := goleak.Find(); err != nil {
				fmt.Fprintln(os.Stderr, "goleak:", err)
				return 1
			}
		}
		return code
	}
	if os.Geteuid() != 0 {
		os.Exit(run())
	}
	os.Exit(testenv.RunIsolated(run))
}

func newReceiver(t *testing.T, iface string, sink *consumertest.MetricsSink) receiver.Metrics {
	t.Helper()
	f := NewFactory()
	cfg := f.CreateDefaultConfig().(*Config)
	cfg.Interfaces.Include = []string{iface}
	cfg.CollectionInterval = 100 * time.Millisecond
	r, err := f.CreateMetrics(context.Background(), receivertest.NewNopSettings(Type), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// lastValues waits for a scrape that satisfies ok.
func lastValues(t *testing.T, sink *consumertest.MetricsSink, ok func(map[string]int64) bool) (map[string]int64, pmetric.Metrics) {
	t.Helper()
	var (
		v  map[string]int64
		md pmetric.Metrics
	)
	testenv.WaitFor(t, "a scrape that matches", func() bool {
		all := sink.AllMetrics()
		if len(all) == 0 {
			return false
		}
		md = all[len(all)-1]
		v = otlptest.Values(md)
		return ok(v)
	})
	return v, md
}

func TestLifecycleOnTheKernel(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "life0")
	ctx := context.Background()

	// Shutdown without Start is safe.
	if err := newReceiver(t, p.Local, new(consumertest.MetricsSink)).Shutdown(ctx); err != nil {
		t.Errorf("shutdown without start: %v", err)
	}

	// The attach mode auto takes: tcx where the kernel has it (6.6+), tc
	// before. One program on each hook, ours.
	wantHooks := []string{"tcx-ingress:" + bpf.ProgramIngress, "tcx-egress:" + bpf.ProgramEgress}
	if !testenv.HasTCX() {
		wantHooks = []string{"tc-ingress:" + bpf.ProgramIngress, "tc-egress:" + bpf.ProgramEgress}
	}
	for round := range 2 {
		sink := new(consumertest.MetricsSink)
		r := newReceiver(t, p.Local, sink)
		before := time.Now()
		if err := r.Start(ctx, componenttest.NewNopHost()); err != nil {
			t.Fatalf("round %d: start: %v", round, err)
		}
		after := time.Now()
		if got := testenv.Attachments(t, p.LocalIndex); !slices.Equal(got, wantHooks) {
			t.Errorf("round %d: attached %q, want %q", round, got, wantHooks)
		}

		p.SendUDP(t, false, true, 25, 64)
		key := otlptest.Key("system.network.packet.count", "network.interface.name="+p.Local,
			"network.io.direction=receive", "network.type=ipv4", "network.transport=udp")
		_, md := lastValues(t, sink, func(v map[string]int64) bool { return v[key] == 25 })

		// Every counter's start timestamp is when counting began: this
		// instance's attach for the interface's, its start for its own.
		points := 0
		ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
		for i := 0; i < ms.Len(); i++ {
			if ms.At(i).Type() != pmetric.MetricTypeSum {
				continue
			}
			dps := ms.At(i).Sum().DataPoints()
			for j := 0; j < dps.Len(); j++ {
				if st := dps.At(j).StartTimestamp().AsTime(); st.Before(before) || st.After(after) {
					t.Errorf("round %d: %s %v: start timestamp %v, want within start (%v to %v)", round, ms.At(i).Name(), dps.At(j).Attributes().AsRaw(), st, before, after)
				}
				points++
			}
		}
		if points == 0 {
			t.Errorf("round %d: no counter in the scrape to check the start of", round)
		}

		if err := r.Shutdown(ctx); err != nil {
			t.Errorf("round %d: shutdown: %v", round, err)
		}
		if got := testenv.Attachments(t, p.LocalIndex); len(got) != 0 {
			t.Errorf("round %d: still attached after shutdown: %v", round, got)
		}
	}
}
