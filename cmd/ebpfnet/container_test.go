package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ebpfnet/ebpfnet/internal/otlptest"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// make image builds the sidecar's image; podman runs it in the test's own
// network namespace with CAP_BPF and CAP_NET_ADMIN only and the shipped
// seccomp profile, as nobody, and it counts exactly. (runc, not crun, and
// the rlimits passed explicitly: this sandbox cannot raise them.)
func TestContainerImage(t *testing.T) {
	testenv.Privileged(t)
	for _, tool := range []string{"podman", "buildah", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool+" (Debian's "+tool+" package)")
		}
	}
	image := fmt.Sprintf("localhost/ebpfnet:test-%d", os.Getpid())
	build := exec.Command("make", "-C", "../..", "--no-print-directory", "image", "IMAGE="+image)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("podman", "rmi", "-f", image).Run() })

	// A network namespace of the test's for the container (not the test's
	// own, which runc would take for its host's): the interface to count
	// and the OTLP endpoint are in it.
	ns := testenv.NewNetns(t)
	var (
		srv   *otlptest.Server
		p     *testenv.Pair
		kbase testenv.Stats
	)
	in := func(fn func() error) {
		t.Helper()
		if err := testenv.RunIn(ns, fn); err != nil {
			t.Fatal(err)
		}
	}
	in(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		if srv, err = otlptest.Listen("127.0.0.1:0"); err != nil {
			return err
		}
		p, err = testenv.CreatePair("image0")
		return err
	})
	t.Cleanup(srv.Stop)
	t.Cleanup(func() { _ = testenv.RunIn(ns, func() error { p.Close(); return nil }) })
	stats := func() (s testenv.Stats) {
		in(func() error { s = testenv.LinkStats(t, p.Local); return nil })
		return s
	}
	in(func() error { testenv.WaitQuiet(t, p.Local, 300*time.Millisecond); return nil })
	kbase = stats()

	name := fmt.Sprintf("ebpfnet-test-%d", os.Getpid())
	sc := startCommand(t, nil, "podman", "run", "--rm", "--name", name, "--runtime", "runc",
		"--network", fmt.Sprintf("ns:/proc/%d/fd/%d", os.Getpid(), int(ns)),
		"--cap-drop=all", "--cap-add=CAP_BPF,CAP_NET_ADMIN",
		"--security-opt", "seccomp=../../examples/container/seccomp.json",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
		"-e", "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+srv.Addr, "-e", "OTEL_EXPORTER_OTLP_INSECURE=true",
		image, "--interfaces", p.Local, "--interval", "1s")
	waitValues(t, srv, 60*time.Second, attachedIs(1))

	// The process in the container: nobody, the two capabilities.
	out, err := exec.Command("podman", "inspect", "--format", "{{.State.Pid}}", name).Output()
	if err != nil {
		t.Fatalf("podman inspect: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("podman inspect: %q", out)
	}
	if got := capsOf(t, pid); got["CapEff"] != twoCaps || got["CapBnd"] != twoCaps {
		t.Errorf("in the container: effective %x, bounding %x; want CAP_BPF and CAP_NET_ADMIN (%x)", got["CapEff"], got["CapBnd"], twoCaps)
	}
	if uid := statusField(t, pid, "Uid"); uid != "65534" {
		t.Errorf("in the container: uid %s, want 65534", uid)
	}

	var sent []otlptest.Series
	in(func() error { sent = otlptest.SendKnown(t, p); return nil })
	waitValues(t, srv, 30*time.Second, func(v map[string]int64) bool {
		return otlptest.Matches(v, p.Local, sent, stats().Sub(kbase))
	})
	if code := sc.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("podman run: exit %d", code)
	}
	in(func() error {
		if got := testenv.Attachments(t, p.LocalIndex); len(got) != 0 {
			return fmt.Errorf("still attached after the container stopped: %v", got)
		}
		return nil
	})
}
