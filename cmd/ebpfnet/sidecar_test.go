package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/ebpfnet/ebpfnet/internal/otlptest"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// binary builds the sidecar once per test run, or takes the one
// EBPFNET_BINARY names (the 6.1 VM has no Go toolchain).
func binary(t testing.TB) string { return buildSidecar(t, "EBPFNET_BINARY", "") }

// build is one build of the sidecar, with some build tags, made once.
type build struct {
	once sync.Once
	path string
	err  error
}

// builds are the sidecar's builds: as make build makes it (static,
// without cgo), and with the race detector (cgo).
var builds = map[string]*build{"": {}, "race": {}}

// buildSidecar builds the sidecar once per test run: as make build builds
// it, or with the race detector (kind "race"), or takes the binary the
// environment variable env names.
func buildSidecar(t testing.TB, env, kind string) string {
	t.Helper()
	if b := os.Getenv(env); b != "" {
		return b
	}
	b := builds[kind]
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "ebpfnet-bin")
		if err != nil {
			b.err = err
			return
		}
		// Readable by anyone: one test runs it without privileges.
		_ = os.Chmod(dir, 0o755)
		b.path = filepath.Join(dir, "ebpfnet")
		cmd := exec.Command("go", "build", "-tags", "grpcnotrace", "-o", b.path, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if kind == "race" {
			cmd = exec.Command("go", "build", "-race", "-o", b.path, ".")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("%v: %v\n%s", cmd.Args, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// syncBuffer is an io.Writer safe to read while a process writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type sidecar struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan error
}

// startSidecar runs the built binary with only the given environment.
func startSidecar(t *testing.T, env []string, args ...string) *sidecar {
	t.Helper()
	return startCommand(t, env, binary(t), args...)
}

// startCommand runs name (the sidecar, or a wrapper that runs it) with only
// the given environment.
func startCommand(t *testing.T, env []string, name string, args ...string) *sidecar {
	t.Helper()
	s := &sidecar{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(name, args...)
	s.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
		if t.Failed() {
			t.Logf("sidecar stderr:\n%s", s.stderr.String())
		}
	})
	return s
}

// started says whether the sidecar has logged its start line, which comes
// once the interfaces present at start are attached.
func (s *sidecar) started() bool { return strings.Contains(s.stderr.String(), "ebpfnet counting") }

// stop sends sig and returns the exit code. (How fast the exit is belongs
// to make bench; the final export is bounded by shutdownTimeout.)
func (s *sidecar) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
		s.done <- nil // for the cleanup
	case <-time.After(60 * time.Second):
		t.Fatalf("sidecar did not exit after %v", sig)
	}
	return s.cmd.ProcessState.ExitCode()
}

func otlpEnv(addr string) []string {
	return []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + addr,
		"OTEL_EXPORTER_OTLP_INSECURE=true",
	}
}

// waitValues waits until the latest export satisfies ok.
func waitValues(t *testing.T, srv *otlptest.Server, ok func(map[string]int64) bool) map[string]int64 {
	t.Helper()
	var last map[string]int64
	if !testenv.Eventually(testenv.Patience, func() bool {
		md, found := srv.Latest()
		if found {
			last = otlptest.Values(md)
		}
		return found && ok(last)
	}) {
		t.Fatalf("no export matched within %v; last one:\n%s", testenv.Patience, dump(last))
	}
	return last
}

func dump(v map[string]int64) string {
	var b strings.Builder
	for k, n := range v {
		fmt.Fprintf(&b, "  %s = %d\n", k, n)
	}
	return b.String()
}

const packetsMetric = otlptest.PacketsMetric

func attachedIs(n int64) func(map[string]int64) bool {
	return func(v map[string]int64) bool { return v[otlptest.Key("ebpfnet.interfaces.attached")] == n }
}

func requireDetached(t *testing.T, p *testenv.Pair) {
	t.Helper()
	if got := testenv.Attachments(t, p.LocalIndex); len(got) != 0 {
		t.Errorf("still attached: %v", got)
	}
}

// resourceOf returns the resource attributes of the latest export.
func resourceOf(t *testing.T, srv *otlptest.Server) map[string]string {
	t.Helper()
	md, _ := srv.Latest()
	out := map[string]string{}
	md.ResourceMetrics().At(0).Resource().Attributes().Range(func(k string, v pcommon.Value) bool {
		out[k] = v.AsString()
		return true
	})
	return out
}
