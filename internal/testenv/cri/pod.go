//go:build linux

package cri

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
	"github.com/google/uuid"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PodConfig names a pod to run.
type PodConfig struct {
	Namespace, Name string
	// UID is the pod's UID; empty, a random UUID is made, as the API
	// server would.
	UID string
	// Sysctls are the pod's (spec.securityContext.sysctls), set in its
	// namespaces when its sandbox starts, over QuietSysctls.
	Sysctls map[string]string
}

// QuietSysctls are every pod's sysctls unless PodConfig.Sysctls says
// otherwise: IPv6 off, as the pods' network is IPv4 only, so that a pod
// sends nothing of its own accord (no DAD, MLD or router solicitation).
// They apply when the sandbox's pause starts, just after CNI has brought
// eth0 up: a pod sends a few IPv6 frames while RunPod runs, which the
// bridge floods to the other pods, and nothing once it has returned.
var QuietSysctls = map[string]string{
	"net.ipv6.conf.all.disable_ipv6":     "1",
	"net.ipv6.conf.default.disable_ipv6": "1",
}

// Pod is a pod sandbox with a running busybox container ("shell") in it,
// as a kubelet would have made it.
type Pod struct {
	Namespace, Name, UID string
	SandboxID            string
	ContainerID          string // the busybox container's
	// NetnsPath is the bind mount that holds the pod's network namespace,
	// under containerd's state directory: what CNI was given as the
	// sandbox, and what the cached result names.
	NetnsPath string
	// HostVeth is the host side of the pod's eth0, on the bridge in the
	// test's network namespace; HostVethIndex its index there.
	HostVeth      string
	HostVethIndex int
	IP            net.IP // the pod's address, on its eth0
	PausePID      int    // the sandbox's pause process
	CgroupParent  string // /kubepods/besteffort/pod<UID>

	h *Harness
}

// RunPod runs a pod in namespace with a new UID, and returns once its
// sandbox is ready and its busybox container started. The pod is removed
// when t ends, if it has not been before.
func (h *Harness) RunPod(t testing.TB, namespace, name string) *Pod {
	t.Helper()
	return h.RunPodConfigs(t, []PodConfig{{Namespace: namespace, Name: name}})[0]
}

// RunPods runs the named pods in namespace all at once, as a kubelet does
// when it is handed many, and returns them, in order, once all are ready.
func (h *Harness) RunPods(t testing.TB, namespace string, names []string) []*Pod {
	t.Helper()
	cfgs := make([]PodConfig, len(names))
	for i, n := range names {
		cfgs[i] = PodConfig{Namespace: namespace, Name: n}
	}
	return h.RunPodConfigs(t, cfgs)
}

// RunPodConfigs is RunPods for pods of any namespaces, given UIDs or
// sysctls.
func (h *Harness) RunPodConfigs(t testing.TB, cfgs []PodConfig) []*Pod {
	t.Helper()
	pods := make([]*Pod, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, c := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pods[i], errs[i] = h.runPod(c)
		}()
	}
	wg.Wait()
	var made []*Pod
	for _, p := range pods {
		if p != nil {
			made = append(made, p)
		}
	}
	t.Cleanup(func() {
		if err := h.removePods(made); err != nil {
			t.Errorf("remove pods: %v", err)
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("run %d pods: %v", len(cfgs), err)
	}
	return pods
}

// runPod does what the kubelet does to start a pod: a sandbox, then its
// containers. A pod whose sandbox was made is returned with the error of a
// later step, so that it can be removed.
func (h *Harness) runPod(c PodConfig) (*Pod, error) {
	uid := c.UID
	if uid == "" {
		uid = uuid.NewString()
	}
	p := &Pod{Namespace: c.Namespace, Name: c.Name, UID: uid, CgroupParent: podCgroupParent(uid), h: h}
	h.mu.Lock()
	h.uids[uid] = true
	h.mu.Unlock()

	labels := map[string]string{
		"io.kubernetes.pod.name":      c.Name,
		"io.kubernetes.pod.namespace": c.Namespace,
		"io.kubernetes.pod.uid":       uid,
	}
	sysctls := map[string]string{}
	for k, v := range QuietSysctls {
		sysctls[k] = v
	}
	for k, v := range c.Sysctls {
		sysctls[k] = v
	}
	logDir := filepath.Join(h.dir, "pods", c.Namespace+"_"+c.Name+"_"+uid)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	namespaces := &runtimeapi.NamespaceOption{
		Network: runtimeapi.NamespaceMode_POD,
		Pid:     runtimeapi.NamespaceMode_CONTAINER,
		Ipc:     runtimeapi.NamespaceMode_POD,
	}
	sbConfig := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{
			Name: c.Name, Namespace: c.Namespace, Uid: uid, Attempt: 0,
		},
		Hostname:     c.Name,
		LogDirectory: logDir,
		Labels:       labels,
		Annotations:  map[string]string{"kubernetes.io/config.source": "api"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: p.CgroupParent,
			Sysctls:      sysctls,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: namespaces,
			},
		},
	}
	ctx, cancel := rpcContext()
	defer cancel()
	sb, err := h.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbConfig})
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s: RunPodSandbox: %w", c.Namespace, c.Name, err)
	}
	p.SandboxID = sb.PodSandboxId
	fail := func(step string, err error) (*Pod, error) {
		return p, fmt.Errorf("pod %s/%s: %s: %w", c.Namespace, c.Name, step, err)
	}

	ctrLabels := map[string]string{"io.kubernetes.container.name": "shell"}
	for k, v := range labels {
		ctrLabels[k] = v
	}
	ctr, err := h.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: p.SandboxID,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "shell", Attempt: 0},
			Image:    &runtimeapi.ImageSpec{Image: BusyboxImage},
			Command:  []string{"/bin/busybox", "sleep", "86400"},
			LogPath:  "shell/0.log",
			Labels:   ctrLabels,
			Linux: &runtimeapi.LinuxContainerConfig{
				Resources: &runtimeapi.LinuxContainerResources{},
				SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
					NamespaceOptions: namespaces,
				},
			},
		},
		SandboxConfig: sbConfig,
	})
	if err != nil {
		return fail("CreateContainer", err)
	}
	p.ContainerID = ctr.ContainerId
	if _, err := h.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: p.ContainerID}); err != nil {
		return fail("StartContainer", err)
	}

	st, err := h.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.SandboxID, Verbose: true})
	if err != nil {
		return fail("PodSandboxStatus", err)
	}
	if s := st.GetStatus().GetState(); s != runtimeapi.PodSandboxState_SANDBOX_READY {
		return fail("sandbox state", fmt.Errorf("%v", s))
	}
	if p.IP = net.ParseIP(st.GetStatus().GetNetwork().GetIp()); p.IP == nil {
		return fail("sandbox status", fmt.Errorf("no IP address: %q", st.GetStatus().GetNetwork().GetIp()))
	}
	info, err := parseSandboxInfo(st.GetInfo())
	if err != nil {
		return fail("sandbox info", err)
	}
	p.PausePID = info.Pid
	for _, ns := range info.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" {
			p.NetnsPath = ns.Path
		}
	}
	if p.NetnsPath == "" {
		return fail("sandbox info", errors.New("no network namespace path"))
	}
	if err := p.findHostVeth(); err != nil {
		return fail("host veth", err)
	}
	return p, nil
}

// findHostVeth finds the pod's veth peer without CNI's word for it: the
// link eth0 names in the pod's namespace, which must be a veth on the
// bridge.
func (p *Pod) findHostVeth() error {
	var peer int
	if err := p.inNetns(func(nh *netlink.Handle) error {
		l, err := nh.LinkByName("eth0")
		if err != nil {
			return err
		}
		peer = l.Attrs().ParentIndex
		return nil
	}); err != nil {
		return err
	}
	l, err := netlink.LinkByIndex(peer)
	if err != nil {
		return fmt.Errorf("eth0's peer %d: %w", peer, err)
	}
	br, err := netlink.LinkByName(bridgeName)
	if err != nil {
		return err
	}
	if l.Type() != "veth" || l.Attrs().MasterIndex != br.Attrs().Index {
		return fmt.Errorf("eth0's peer %s is a %s on master %d, not a veth on %s", l.Attrs().Name, l.Type(), l.Attrs().MasterIndex, bridgeName)
	}
	p.HostVeth, p.HostVethIndex = l.Attrs().Name, l.Attrs().Index
	return nil
}

// inNetns calls fn with a netlink handle whose sockets are in the pod's
// network namespace.
func (p *Pod) inNetns(fn func(*netlink.Handle) error) error {
	ns, err := netns.GetFromPath(p.NetnsPath)
	if err != nil {
		return fmt.Errorf("pod %s's network namespace: %w", p.Name, err)
	}
	defer ns.Close()
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer nh.Close()
	return fn(nh)
}

// RemovePod stops and removes the pod's sandbox, as the kubelet does when a
// pod is deleted, and returns once its host veth is gone. It also removes
// the pod's cgroup directories.
func (h *Harness) RemovePod(t testing.TB, p *Pod) {
	t.Helper()
	h.RemovePods(t, []*Pod{p})
}

// RemovePods removes the pods all at once (see RemovePod).
func (h *Harness) RemovePods(t testing.TB, pods []*Pod) {
	t.Helper()
	if err := h.removePods(pods); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		testenv.WaitFor(t, "pod "+p.Name+"'s veth "+p.HostVeth+" to go", func() bool {
			_, err := netlink.LinkByName(p.HostVeth)
			return errors.As(err, new(netlink.LinkNotFoundError))
		})
	}
}

func (h *Harness) removePods(pods []*Pod) error {
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.removeSandbox(p.SandboxID); err != nil {
				errs[i] = fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
				return
			}
			errs[i] = removePodCgroups(p.UID)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// removeSandbox stops and removes a sandbox, which need not exist any more.
func (h *Harness) removeSandbox(id string) error {
	ctx, cancel := rpcContext()
	defer cancel()
	if _, err := h.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil && status.Code(err) != codes.NotFound {
		return fmt.Errorf("StopPodSandbox %s: %w", id, err)
	}
	if _, err := h.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil && status.Code(err) != codes.NotFound {
		return fmt.Errorf("RemovePodSandbox %s: %w", id, err)
	}
	return nil
}
