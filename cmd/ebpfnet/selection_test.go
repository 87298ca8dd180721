//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebpfnet/ebpfnet/internal/otlptest"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// Every split_by choice, and metrics switched off, on the same traffic at
// once: one sidecar per choice on the same interface (each with counters of
// its own), each exact over OTLP against the frames sent and the kernel.
func TestSplitByAndSwitchesExact(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "split1")
	testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
	kbase := testenv.LinkStats(t, p.Local)

	type run struct {
		by  []string
		srv *otlptest.Server
		sc  *sidecar
	}
	start := func(name, yaml string) (*otlptest.Server, *sidecar) {
		file := filepath.Join(t.TempDir(), name+".yaml")
		if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		srv := otlptest.Start(t, "127.0.0.1:0")
		return srv, startSidecar(t, otlpEnv(srv.Addr), "--config", file, "--interfaces", p.Local, "--interval", "1s")
	}
	var runs []run
	for _, by := range [][]string{{}, {"network.type"}, {"network.transport"}} {
		srv, sc := start(fmt.Sprint(len(runs)), fmt.Sprintf("split_by: [%s]\n", strings.Join(by, ", ")))
		runs = append(runs, run{by, srv, sc})
	}
	switchedSrv, switched := start("switches", `metrics:
  system.network.io: {enabled: false}
  ebpfnet.collection.duration: {enabled: false}
  system.network.errors: {enabled: true}
`)
	for _, r := range append(runs, run{srv: switchedSrv}) {
		waitValues(t, r.srv, attachedIs(1))
	}

	sent := otlptest.SendKnown(t, p)
	k := testenv.LinkStats(t, p.Local).Sub(kbase)
	for _, r := range runs {
		t.Run(fmt.Sprint(r.by), func(t *testing.T) {
			want := otlptest.Merge(sent, r.by)
			waitValues(t, r.srv, func(v map[string]int64) bool { return otlptest.Matches(v, p.Local, want, k) })
		})
	}
	t.Run("switches", func(t *testing.T) {
		v := waitValues(t, switchedSrv, func(v map[string]int64) bool {
			return otlptest.Totals(v, packetsMetric, p.Local, "receive") == int64(k.RxPackets) &&
				otlptest.Totals(v, packetsMetric, p.Local, "transmit") == int64(k.TxPackets)
		})
		md, _ := switchedSrv.Latest()
		names := map[string]bool{}
		for _, m := range otlptest.Metrics(md) {
			names[m.Name()] = true
		}
		for name, want := range map[string]bool{"system.network.io": false, "ebpfnet.collection.duration": false,
			"system.network.errors": true, "system.network.packet.count": true, "ebpfnet.interfaces.attached": true} {
			if names[name] != want {
				t.Errorf("%s exported: %v, want %v (%s)", name, names[name], want, dump(v))
			}
		}
	})
	for _, sc := range []*sidecar{runs[0].sc, runs[1].sc, runs[2].sc, switched} {
		if code := sc.stop(t, syscall.SIGTERM); code != 0 {
			t.Errorf("exit %d", code)
		}
	}
	requireDetached(t, p)
}
