//go:build linux

package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/internal/datapath"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
)

// namingSteps times, with the pods there, what the agent does between a
// result's inotify event and a snapshot naming the pod: libcni's read of
// the container's cached results, the sandbox path's namespace id
// (RTM_GETNSID), and one snapshot.
func namingSteps(d *datapath.Datapath, n *cniNet, ps []*benchPod) (string, error) {
	cache := libcni.NewCNIConfigWithCacheDir(nil, n.cacheDir, nil)
	p := ps[len(ps)/2]
	readCache := func() error {
		atts, err := cache.GetCachedAttachments(p.rt.ContainerID)
		if err != nil {
			return err
		}
		if len(atts) != 1 {
			return fmt.Errorf("%d cached results for %s", len(atts), p.name)
		}
		for _, at := range atts {
			list, err := libcni.NetworkConfFromBytes(at.Config)
			if err != nil {
				return err
			}
			rt := &libcni.RuntimeConf{ContainerID: at.ContainerID, IfName: at.IfName, NetNS: at.NetNS, Args: at.CniArgs}
			if _, err := cache.GetNetworkListCachedResult(list, rt); err != nil {
				return err
			}
		}
		return nil
	}
	nsid := func() error {
		fd, err := unix.Open(p.nsPath, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		var st unix.Statfs_t
		if err := unix.Fstatfs(fd, &st); err != nil {
			return err
		}
		id, err := netlink.GetNetNsIdByFd(fd)
		if err == nil && id < 0 {
			err = fmt.Errorf("%s has no namespace id here", p.nsPath)
		}
		return err
	}
	var s snapshot.Snapshot
	snap := func() error { return d.Snapshot(&s) }
	var b strings.Builder
	fmt.Fprintf(&b, "What naming does after a result is written, each step timed alone with the %d pods there (median of 200): ", len(ps))
	for i, step := range []struct {
		what string
		fn   func() error
	}{
		{fmt.Sprintf("libcni's read of one container's cached results (GetCachedAttachments lists results/, %d files, and reads the container's; then GetNetworkListCachedResult)", len(ps)), readCache},
		{"the sandbox path's namespace id (open, fstatfs, RTM_GETNSID)", nsid},
		{fmt.Sprintf("one snapshot of the %d interfaces", len(ps)), snap},
	} {
		var ds []time.Duration
		for range 200 {
			t0 := time.Now()
			if err := step.fn(); err != nil {
				return "", err
			}
			ds = append(ds, time.Since(t0))
		}
		slices.Sort(ds)
		sep := "; "
		if i == 2 {
			sep = ".\n\n"
		}
		fmt.Fprintf(&b, "%s %s%s", step.what, dur(ds[len(ds)/2].Nanoseconds()), sep)
	}
	return b.String(), nil
}
