package main

import (
	"bytes"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebpfnet/ebpfnet/internal/otlptest"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// SIGTERM while traffic flows: the last export reaches the receiver, the
// process exits 0, and nothing stays attached.
func TestSIGTERMExportsOnceMoreAndDetaches(t *testing.T) {
	testenv.Privileged(t)
	srv := otlptest.Start(t, "127.0.0.1:0")
	p := testenv.NewPair(t, "term0")
	// A long interval: only the export SIGTERM triggers can bring the
	// traffic sent after the first export.
	sc := startSidecar(t, otlpEnv(srv.Addr), "--interfaces", p.Local, "--interval", "3s")
	waitValues(t, srv, attachedIs(1))
	before, _ := srv.Requests()

	// Traffic goes on until the signal; at least the first 50 packets
	// were sent before it.
	stop := make(chan struct{})
	sent := make(chan struct{})
	first := make(chan struct{})
	go func() {
		defer close(sent)
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
				p.SendUDP(t, false, true, 50, 100)
				if n == 0 {
					close(first)
				}
			}
		}
	}()
	select {
	case <-first:
	case <-sent: // the sender failed, and said why
		t.FailNow()
	}
	signalled := time.Now()
	code := sc.stop(t, syscall.SIGTERM)
	close(stop)
	<-sent
	if code != 0 {
		t.Errorf("SIGTERM: exit %d, want 0", code)
	}
	n, at := srv.Requests()
	if n <= before || at.Before(signalled) {
		t.Errorf("no export after SIGTERM (%d exports before, %d after, last at %v, signal at %v)", before, n, at, signalled)
	}
	md, _ := srv.Latest()
	if got := otlptest.Totals(otlptest.Values(md), packetsMetric, p.Local, "receive"); got < 50 {
		t.Errorf("final export counted %d received packets; the traffic before SIGTERM was at least 50", got)
	}
	requireDetached(t, p)
}

func TestMissingPrivilegesSaysWhat(t *testing.T) {
	testenv.Privileged(t)
	cmd := exec.Command(binary(t), "--interfaces", "x")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	_ = cmd.Run()
	want := "ebpfnet: insufficient privileges: ebpfnet needs root, or CAP_BPF and CAP_NET_ADMIN (missing CAP_BPF and CAP_NET_ADMIN)"
	if code := cmd.ProcessState.ExitCode(); code != 1 || strings.TrimSpace(stderr.String()) != want {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and:\n%s", code, stderr.String(), want)
	}
}
