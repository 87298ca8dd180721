//go:build linux

package cri

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// close undoes Start: it runs when the test ends, after the pods' own
// cleanups.
func (h *Harness) close(t testing.TB) {
	if h.rt != nil && !h.hasExited() {
		if err := h.removeAll(); err != nil {
			t.Errorf("remove the pods: %v", err)
		}
	}
	if t.Failed() {
		t.Logf("containerd's log, last lines:\n%s", h.logTail(60))
	}
	if h.conn != nil {
		h.conn.Close()
	}
	if h.cmd != nil {
		_ = h.cmd.Process.Signal(syscall.SIGTERM)
		if !testenv.Eventually(testenv.Patience, h.hasExited) {
			t.Errorf("containerd did not stop on SIGTERM: killing it")
			_ = h.cmd.Process.Kill()
			<-h.exited
		}
	}
	// The shims of removed pods exit on their own, soon after. One that
	// does not had a pod that could not be removed: end those of this
	// containerd's, known by the address it was given.
	if !testenv.Eventually(testenv.Patience, func() bool { return len(h.shims()) == 0 }) {
		for _, pid := range h.shims() {
			t.Errorf("shim %d outlived containerd: killing it", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	// The bridge plugin leaves the bridge: the next harness starts anew.
	if br, err := netlink.LinkByName(bridgeName); err == nil {
		if err := netlink.LinkDel(br); err != nil {
			t.Errorf("remove bridge %s: %v", bridgeName, err)
		}
	}
	for path, v := range h.sysctls {
		if now, err := os.ReadFile(path); err == nil && string(now) == string(v) {
			continue
		}
		if err := os.WriteFile(path, v, 0o644); err != nil {
			t.Errorf("restore %s: %v", path, err)
		}
	}
	for _, m := range h.mountsUnder(h.dir) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", m, err)
		}
	}
	for i := len(h.mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(h.mounts[i], unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", h.mounts[i], err)
		}
	}
	h.mu.Lock()
	for uid := range h.uids {
		if err := removePodCgroups(uid); err != nil {
			t.Errorf("pod %s's cgroups: %v", uid, err)
		}
	}
	h.mu.Unlock()
	// kubepods/besteffort and kubepods, where this harness made them and
	// nothing else uses them now.
	for _, d := range h.newKubepods {
		_ = unix.Rmdir(filepath.Join(d, "besteffort"))
		_ = unix.Rmdir(d)
	}
	if err := os.RemoveAll(h.dir); err != nil {
		t.Errorf("remove %s: %v", h.dir, err)
	}
}

// removeAll stops and removes every pod sandbox containerd has.
func (h *Harness) removeAll() error {
	ctx, cancel := context.WithTimeout(context.Background(), rpcLimit)
	defer cancel()
	resp, err := h.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	var errs []error
	for _, sb := range resp.Items {
		if err := h.removeSandbox(sb.Id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// shims lists the shim processes started for this containerd: their
// command lines carry its address.
func (h *Harness) shims() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) == 0 || !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-address" && args[i+1] == h.sock {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}
