package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ebpfnet/ebpfnet/internal/otlptest"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// The sidecar built with the race detector, with the exporters the
// DaemonSet ships (otlp,prometheus) and with a third (console): the SDK
// calls the collection callback once per reader, each reader from its own
// goroutine. Scraped as fast as it answers while interfaces come and go,
// it must report no race, not crash, and count a steady interface exactly.
func TestRaceBuildUnderReadersAndChurn(t *testing.T) {
	testenv.Privileged(t)
	race := buildSidecar(t, "EBPFNET_RACE_BINARY", "race")
	for _, exporters := range []string{"otlp,prometheus", "otlp,prometheus,console"} {
		t.Run(exporters, func(t *testing.T) {
			srv := otlptest.Start(t, "127.0.0.1:0")
			p := testenv.NewPair(t, "race0")
			testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
			kbase := testenv.LinkStats(t, p.Local)
			port := testenv.FreePort(t)
			env := append(otlpEnv(srv.Addr), "OTEL_METRICS_EXPORTER="+exporters,
				"OTEL_EXPORTER_PROMETHEUS_HOST=127.0.0.1", fmt.Sprintf("OTEL_EXPORTER_PROMETHEUS_PORT=%d", port))
			sc := startCommand(t, env, race, "--interfaces", "race*", "--interval", "100ms")
			waitValues(t, srv, attachedIs(1))

			stop := make(chan struct{})
			var wg sync.WaitGroup
			var scrapes, churns atomic.Int64
			// Scrapes, as hard as the endpoint answers.
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
						if err == nil {
							_, _ = io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							scrapes.Add(1)
						}
					}
				}()
			}
			// Interfaces appearing and going, with the name pattern the
			// sidecar counts.
			peers := testenv.NewNetns(t)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					name := fmt.Sprintf("racec%d", i%20)
					veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p", PeerNamespace: netlink.NsFd(peers)}
					if netlink.LinkAdd(veth) == nil {
						_ = netlink.LinkSetUp(veth)
						_ = netlink.LinkDel(veth)
						churns.Add(1)
					}
				}
			}()
			// Traffic on the steady interface while all that goes on.
			for range 20 {
				p.SendUDP(t, false, true, 50, 100)
				p.SendUDP(t, false, false, 20, 100)
			}
			testenv.WaitFor(t, "200 scrapes and 200 interfaces come and gone", func() bool {
				return scrapes.Load() >= 200 && churns.Load() >= 200
			})
			close(stop)
			wg.Wait()

			k := testenv.LinkStats(t, p.Local).Sub(kbase)
			waitValues(t, srv, func(v map[string]int64) bool {
				return otlptest.Totals(v, otlptest.PacketsMetric, p.Local, "receive") == int64(k.RxPackets) &&
					otlptest.Totals(v, otlptest.PacketsMetric, p.Local, "transmit") == int64(k.TxPackets)
			})
			code := sc.stop(t, syscall.SIGTERM)
			out := sc.stderr.String()
			if code != 0 || strings.Contains(out, "DATA RACE") || strings.Contains(out, "panic") {
				t.Errorf("race build exit %d after %d scrapes and %d interfaces; stderr:\n%.6000s", code, scrapes.Load(), churns.Load(), out)
			}
			t.Logf("%d scrapes, %d interfaces created and deleted", scrapes.Load(), churns.Load())
			requireDetached(t, p)
		})
	}
}
