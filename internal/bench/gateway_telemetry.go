//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// fleetStats is fleetgen's "stats" answer.
type fleetStats struct {
	Agents       int   `json:"agents"`
	Exports      int64 `json:"exports"`
	Points       int64 `json:"points"`
	Failed       int64 `json:"failed"`
	FailedPoints int64 `json:"failed_points"`
	SinkRequests int64 `json:"sink_requests"`
	SinkBytes    int64 `json:"sink_bytes"`
}

// The Collector's own metrics (v0.165.0, its Prometheus reader), summed
// over their label sets unless a label is given.
const (
	telAccepted       = `otelcol_receiver_accepted_metric_points`
	telRefused        = `otelcol_receiver_refused_metric_points`
	telReceiverFailed = `otelcol_receiver_failed_metric_points`
	telSent           = `otelcol_exporter_sent_metric_points{exporter="otlp_http"}`
	telSendFailed     = `otelcol_exporter_send_failed_metric_points{exporter="otlp_http"}`
	telEnqueueFailed  = `otelcol_exporter_enqueue_failed_metric_points{exporter="otlp_http"}`
	telQueue          = `otelcol_exporter_queue_size{exporter="otlp_http"}`
	telMemRefused     = `otelcol_processor_memory_limiter_refused_metric_points`
)

// scrapeTelemetry reads the Collector's telemetry endpoint into the
// values of the keys above.
func scrapeTelemetry(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	keys := []string{telAccepted, telRefused, telReceiverFailed, telSent, telSendFailed, telEnqueueFailed, telQueue, telMemRefused}
	vals := map[string]float64{}
	for line := range bytes.Lines(body) {
		l := string(bytes.TrimSpace(line))
		if l == "" || l[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(l, ' ')
		if sp < 0 {
			continue
		}
		name, labels, _ := strings.Cut(l[:sp], "{")
		v, err := strconv.ParseFloat(l[sp+1:], 64)
		if err != nil {
			continue
		}
		for _, k := range keys {
			kname, klabel, _ := strings.Cut(k, "{")
			if name == kname && strings.Contains(labels, strings.TrimSuffix(klabel, "}")) {
				vals[k] += v
			}
		}
	}
	return vals, nil
}

// cpuBusy is CPU n's busy time in ticks (/proc/stat: all but idle and
// iowait).
func cpuBusy(n int) (int64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	prefix := fmt.Sprintf("cpu%d ", n)
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			var busy int64
			for i, f := range strings.Fields(rest) {
				v, _ := strconv.ParseInt(f, 10, 64)
				if i != 3 && i != 4 && i < 8 { // idle, iowait; guest time is in user already
					busy += v
				}
			}
			return busy, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/stat", prefix)
}

func waitHTTP(url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not ready after %v: %v", url, limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePorts returns n ports free on 127.0.0.1 just now.
func freePorts(n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	return ports, nil
}
