package main

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// `make run`, as README tells a new user, in a test namespace: it builds,
// starts, and prints a table with the interface's traffic. It runs with
// the PATH sudo gives (Debian's secure_path), which has no Go in it.
func TestMakeRun(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "run0")
	cmd := exec.Command("/usr/bin/make", "-s", "run")
	cmd.Dir = "../.."
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "OTEL_METRIC_EXPORT_INTERVAL=1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		_ = cmd.Wait()
		requireDetached(t, p)
	}()

	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(5 * testenv.Patience) // the first run builds
	sentTraffic := false
	var table []string
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("make run ended; output:\n%s", strings.Join(table, "\n"))
			}
			table = append(table, line)
			if strings.HasPrefix(line, "INTERFACE") && !sentTraffic {
				sentTraffic = true
				p.SendUDP(t, false, true, 10, 100)
			}
			f := strings.Fields(line)
			if sentTraffic && len(f) > 8 && f[0] == p.Local && f[1] == "rx" && f[7] == "10" {
				t.Logf("make run printed:\n%s", strings.Join(table[max(0, len(table)-8):], "\n"))
				return
			}
		case <-deadline:
			t.Fatalf("no table row with 10 UDP packets for %s; output:\n%s", p.Local, strings.Join(table, "\n"))
		}
	}
}

// The terminal table comes a second after start, not after a whole
// interval (an hour here), and the final one on SIGINT shows the rates of
// the last window, not zeros.
func TestTableFirstAndLast(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "table0")
	sc := startSidecar(t, nil, "--interfaces", p.Local, "--interval", "1h")
	if !testenv.Eventually(testenv.Patience, func() bool { return strings.Contains(sc.stdout.String(), "INTERFACE") }) {
		t.Fatalf("no table yet; stdout:\n%s", sc.stdout.String())
	}
	first := sc.stdout.String()
	if !strings.Contains(first, "1 interface attached") || !strings.Contains(first, "rates over the last") {
		t.Errorf("first table:\n%s", first)
	}
	p.SendUDP(t, false, true, 50, 100)
	if code := sc.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var last []string
	for _, line := range strings.Split(sc.stdout.String(), "\n") {
		if f := strings.Fields(line); len(f) > 5 && f[0] == p.Local && f[1] == "rx" {
			last = f
		}
	}
	if last == nil || last[2] != "50" || last[4] == "0.0" || last[4] == "-" || last[7] != "50" {
		t.Errorf("final table's row %v, want 50 UDP4 packets and a rate; stdout:\n%s", last, sc.stdout.String())
	}
}

// OTEL_LOG_LEVEL sets the level, --log-format json the format, and the
// start line says the attach mode actually used and the garbage collector's
// setting: defaultGOGC, or GOGC where set.
func TestLogLevelAndFormat(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "logs0")
	sc := startSidecar(t, []string{"OTEL_METRICS_EXPORTER=none", "OTEL_LOG_LEVEL=debug"}, "--interfaces", p.Local, "--log-format", "json")
	testenv.WaitFor(t, "the start line", sc.started)
	mode := "tc"
	if testenv.HasTCX() {
		mode = "tcx"
	}
	var debug, start bool
	for _, line := range strings.Split(strings.TrimSpace(sc.stderr.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		debug = debug || rec["level"] == "DEBUG"
		if rec["msg"] == "ebpfnet counting" {
			start = rec["attach"] == mode && rec["gogc"] == "50"
		}
	}
	if !debug || !start {
		t.Errorf("debug lines %v, start line with attach=%s gogc=50 %v:\n%s", debug, mode, start, sc.stderr.String())
	}
	sc.stop(t, syscall.SIGTERM)

	own := startSidecar(t, []string{"OTEL_METRICS_EXPORTER=none", "GOGC=80"}, "--interfaces", p.Local)
	testenv.WaitFor(t, "the start line with GOGC=80", own.started)
	own.stop(t, syscall.SIGTERM)
	if !strings.Contains(own.stderr.String(), "gogc=80") {
		t.Errorf("with GOGC=80, the start line says:\n%s", own.stderr.String())
	}

	quiet := startSidecar(t, []string{"OTEL_METRICS_EXPORTER=none", "OTEL_LOG_LEVEL=error"}, "--interfaces", p.Local)
	testenv.WaitFor(t, "the quiet sidecar attached", func() bool { return len(testenv.Attachments(t, p.LocalIndex)) != 0 })
	if code := quiet.stop(t, syscall.SIGTERM); code != 0 || quiet.stderr.String() != "" {
		t.Errorf("at level error: exit %d, stderr:\n%s", code, quiet.stderr.String())
	}
}
