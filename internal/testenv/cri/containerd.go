//go:build linux

package cri

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (h *Harness) containerdConfig() string {
	q := strconv.Quote
	p := func(name string) string { return q(filepath.Join(h.dir, name)) }
	return `version = 2
root = ` + p("root") + `
state = ` + p("state") + `
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.opt",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = ` + q(h.sock) + `

[ttrpc]
  address = ` + q(h.sock+".ttrpc") + `

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ` + q(PauseImage) + `
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_unprivileged_icmp = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = ` + p("runc") + `

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = ` + q(cniBinDir) + `
    conf_dir = ` + p("net.d") + `
    max_conf_num = 1
`
}

func (h *Harness) startContainerd(t testing.TB) {
	t.Helper()
	logf, err := os.Create(h.logPath)
	if err != nil {
		t.Fatal(err)
	}
	h.cmd = exec.Command("containerd", "--config", filepath.Join(h.dir, "config.toml"), "--log-level", "info")
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	// containerd dies with the test process. The parent-death signal is
	// sent when the thread that started the child ends, so that thread is
	// kept, locked, until containerd has exited.
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	h.exited = make(chan struct{})
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer logf.Close()
		if err := h.cmd.Start(); err != nil {
			started <- err
			close(h.exited)
			return
		}
		started <- nil
		_ = h.cmd.Wait()
		close(h.exited)
	}()
	if err := <-started; err != nil {
		h.cmd = nil
		t.Fatalf("start containerd: %v", err)
	}

	h.conn, err = grpc.NewClient("unix://"+h.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	h.rt = runtimeapi.NewRuntimeServiceClient(h.conn)
	h.img = runtimeapi.NewImageServiceClient(h.conn)

	var status string
	var noCRI bool
	testenv.WaitFor(t, "containerd's CRI runtime and network to be ready", func() bool {
		if h.hasExited() {
			return true
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := h.rt.Status(ctx, &runtimeapi.StatusRequest{})
		if err != nil {
			// containerd serves, without its CRI plugin: it failed to load.
			noCRI = grpcstatus.Code(err) == codes.Unimplemented
			status = err.Error()
			return noCRI
		}
		ready := 0
		status = ""
		for _, c := range resp.GetStatus().GetConditions() {
			if c.Status {
				ready++
			}
			status += fmt.Sprintf("%s=%v(%s) ", c.Type, c.Status, c.Message)
		}
		return ready == len(resp.GetStatus().GetConditions()) && ready > 0
	})
	if h.hasExited() {
		t.Fatalf("containerd exited: %v\n%s", h.cmd.ProcessState, h.logTail(40))
	}
	if noCRI {
		t.Fatalf("containerd runs without its CRI plugin: %s\n%s", status, h.logTail(40))
	}
	t.Logf("containerd %d ready: %s", h.ContainerdPID(), status)
}

func (h *Harness) hasExited() bool {
	select {
	case <-h.exited:
		return true
	default:
		return false
	}
}

func (h *Harness) importImages(t testing.TB, bbData []byte, applets []string) {
	t.Helper()
	pause, err := buildPause(filepath.Join(h.dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	images := []struct {
		ref        string
		files      []imageFile
		entrypoint []string
		cmd        []string
	}{
		{PauseImage, []imageFile{{name: "pause", data: pause}}, []string{"/pause"}, nil},
		{BusyboxImage, busyboxFiles(bbData, applets), nil, []string{"/bin/sh"}},
	}
	for i, img := range images {
		path := filepath.Join(h.dir, "images", fmt.Sprintf("%d.tar", i))
		if err := writeOCIArchive(path, img.ref, img.files, img.entrypoint, img.cmd); err != nil {
			t.Fatalf("image %s: %v", img.ref, err)
		}
		cmd := exec.Command("ctr", "--address", h.sock, "-n", criNamespace,
			"images", "import", "--snapshotter", "overlayfs", path)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ctr images import %s: %v\n%s", img.ref, err, out)
		}
		// The CRI plugin learns of the image from containerd's events.
		testenv.WaitFor(t, "the CRI plugin to see image "+img.ref, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), rpcLimit)
			defer cancel()
			resp, err := h.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: img.ref}})
			return err == nil && resp.GetImage() != nil
		})
	}
}

func (h *Harness) logTail(n int) string {
	b, err := os.ReadFile(h.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
