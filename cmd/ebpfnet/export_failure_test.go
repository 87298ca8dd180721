package main

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ebpfnet/ebpfnet/internal/otlptest"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// The Collector is down at start, for two failed exports: the sidecar
// keeps counting, logs the outage once, and when the Collector comes up the
// totals are exact.
func TestCollectorDownAtStart(t *testing.T) {
	testenv.Privileged(t)
	// Down: a port that takes connections and closes them at once, which
	// counts the exporter's attempts. Its broken pipes must not stop the
	// sidecar (they once did: SIGPIPE, taken for a closed stdout, came from
	// the exporter's socket).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	var attempts atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			attempts.Add(1)
			c.Close()
		}
	}()

	p := testenv.NewPair(t, "down0")
	testenv.WaitQuiet(t, p.Local, 300*time.Millisecond)
	kbase := testenv.LinkStats(t, p.Local)
	sc := startSidecar(t, otlpEnv(addr), "--interfaces", p.Local, "--interval", "1s")
	testenv.WaitFor(t, "the start line, logged once attached", sc.started)
	want := otlptest.SendKnown(t, p)

	// One export failed (it is logged), and the next one is failing too.
	testenv.WaitFor(t, "the first failed export", func() bool { return strings.Contains(sc.stderr.String(), "export failing") })
	first := attempts.Load()
	testenv.WaitFor(t, "the next export's attempts", func() bool { return attempts.Load() > first })
	ln.Close()

	srv := otlptest.Start(t, addr)
	waitValues(t, srv, func(v map[string]int64) bool {
		return otlptest.Matches(v, p.Local, want, testenv.LinkStats(t, p.Local).Sub(kbase))
	})
	if n := strings.Count(sc.stderr.String(), "export failing"); n != 1 {
		t.Errorf("the outage was logged %d times, want once:\n%s", n, sc.stderr.String())
	}
	// The export that got through returns (after its retries) a moment
	// after the data arrived.
	testenv.WaitFor(t, "the recovery logged", func() bool { return strings.Contains(sc.stderr.String(), "exports recovered") })
	if n := strings.Count(sc.stderr.String(), "exports recovered"); n != 1 {
		t.Errorf("the recovery was logged %d times, want once:\n%s", n, sc.stderr.String())
	}
	if code := sc.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// OTLP/gRPC (the default) aimed at an OTLP/HTTP port, and OTLP/HTTP aimed
// at a gRPC port: the first failed export names the mismatch.
func TestProtocolMismatchIsNamed(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "proto0")
	httpSrv := httptest.NewServer(http.NotFoundHandler())
	defer httpSrv.Close()
	grpcSrv := otlptest.Start(t, "127.0.0.1:0")
	for _, tc := range []struct {
		name string
		env  []string
		hint string
	}{
		{"grpc to an HTTP port", otlpEnv(httpSrv.Listener.Addr().String()), "the endpoint answers HTTP/1, not gRPC"},
		{"http/protobuf to a gRPC port", append(otlpEnv(grpcSrv.Addr), "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"), "the endpoint answers gRPC (HTTP/2), not OTLP/HTTP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := startSidecar(t, tc.env, "--interfaces", p.Local, "--interval", "1s")
			testenv.WaitFor(t, "the first failed export", func() bool { return strings.Contains(sc.stderr.String(), "export failing") })
			if !strings.Contains(sc.stderr.String(), tc.hint) {
				t.Errorf("the failure does not name the mismatch (%q):\n%s", tc.hint, sc.stderr.String())
			}
			if code := sc.stop(t, syscall.SIGTERM); code != 0 {
				t.Errorf("exit %d", code)
			}
		})
	}
}

// Each way a protocol mismatch shows, as the exporters report it: the
// kernel test above meets one of the last two by chance (whether the gRPC
// server's SETTINGS frame arrives before or after the request is written).
func TestProtocolHint(t *testing.T) {
	for _, tc := range []struct{ err, want string }{
		{`rpc error: code = Unavailable desc = connection error: desc = "error reading server preface: http2: frame too large"`, "answers HTTP/1"},
		{`failed to upload metrics: Post "http://127.0.0.1:4317/v1/metrics": net/http: HTTP/1.x transport connection broken: malformed HTTP response "\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x05\x00\x00@\x00"`, "answers gRPC"},
		{`failed to upload metrics: Post "http://127.0.0.1:4317/v1/metrics": readLoopPeekFailLocked: %!w(<nil>)`, "answers gRPC"},
		{`failed to upload metrics: Post "http://127.0.0.1:4318/v1/metrics": dial tcp 127.0.0.1:4318: connect: connection refused`, ""},
	} {
		got := protocolHint(errors.New(tc.err))
		if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("%s: hint %q, want one with %q", tc.err, got, tc.want)
		}
	}
}
