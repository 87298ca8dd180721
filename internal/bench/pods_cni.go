//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/uuid"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/internal/datapath"
	"github.com/ebpfnet/ebpfnet/internal/snapshot"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// The pods' network, as a runtime configures one: Debian's bridge plugin
// on a bridge of its own, host-local IPAM over a documentation range with
// its state in the bench's temp dir, no masquerading (no iptables).
const (
	podsNetwork = "benchpods"
	podsBridge  = "bcni0"
	podsConf    = `{"cniVersion": "1.0.0", "name": %q, "plugins": [{"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
 "ipam": {"type": "host-local", "ranges": [[{"subnet": "203.0.113.0/24"}]], "dataDir": %q}}]}`
	cniBinDir = "/usr/lib/cni"
)

// cniNet drives CNI ADD and DEL through libcni, as containerd does, into
// network namespaces bind-mounted under a temp dir, caching the results
// in the agent's cni_cache_dir.
type cniNet struct {
	dir, cacheDir, nsDir string
	cni                  *libcni.CNIConfig
	list                 *libcni.NetworkConfigList
	made                 []*benchPod // everything to clean up
}

// benchPod is one pod sandbox: its kubelet arguments, its network
// namespace, and what was timed of it.
type benchPod struct {
	name, uid, nsPath string
	rt                *libcni.RuntimeConf
	nsMade, added     bool
	veth              string // the host end, from the ADD's result

	start, returned, created, seen, named time.Time
}

func newCNINet() (*cniNet, error) {
	dir, err := os.MkdirTemp("", "ebpfnet-bench-pods")
	if err != nil {
		return nil, err
	}
	n := &cniNet{dir: dir, cacheDir: filepath.Join(dir, "cni"), nsDir: filepath.Join(dir, "netns")}
	for _, d := range []string{n.cacheDir, n.nsDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	n.list, err = libcni.NetworkConfFromBytes(fmt.Appendf(nil, podsConf, podsNetwork, podsBridge, filepath.Join(dir, "ipam")))
	if err != nil {
		return nil, err
	}
	n.cni = libcni.NewCNIConfigWithCacheDir([]string{cniBinDir}, n.cacheDir, nil)
	return n, nil
}

// pods makes count pods' descriptions: their kubelet arguments and where
// their sandboxes' namespaces go (made by sandbox).
func (n *cniNet) pods(prefix string, count int) []*benchPod {
	ps := make([]*benchPod, count)
	for i := range ps {
		id := make([]byte, 32)
		_, _ = rand.Read(id)
		container := hex.EncodeToString(id) // 64 hex digits, as containerd's
		p := &benchPod{name: fmt.Sprintf("%s-%03d", prefix, i), uid: uuid.NewString()}
		p.nsPath = filepath.Join(n.nsDir, "cni-"+container[:16])
		p.rt = &libcni.RuntimeConf{ContainerID: container, NetNS: p.nsPath, IfName: "eth0",
			// As containerd passes the kubelet's arguments.
			Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "bench"}, {"K8S_POD_NAME", p.name},
				{"K8S_POD_INFRA_CONTAINER_ID", container}, {"K8S_POD_UID", p.uid}}}
		ps[i] = p
	}
	n.made = append(n.made, ps...)
	return ps
}

// sandbox makes the pod's network namespace, bind-mounted at its path as a
// runtime mounts one under /run/netns (the bench's mount namespace is its
// own, so the mount is seen by the plugins it runs and nobody else).
func (n *cniNet) sandbox(p *benchPod) error {
	ns, err := testenv.CreateNetns()
	if err != nil {
		return err
	}
	defer ns.Close()
	f, err := os.Create(p.nsPath)
	if err != nil {
		return err
	}
	f.Close()
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", int(ns)), p.nsPath, "", unix.MS_BIND, ""); err != nil {
		os.Remove(p.nsPath)
		return fmt.Errorf("bind-mount a network namespace at %s: %w", p.nsPath, err)
	}
	p.nsMade = true
	return nil
}

// add runs CNI ADD for p and notes when it began and returned, and the
// host veth the result names.
func (n *cniNet) add(p *benchPod) error {
	p.start = time.Now()
	res, err := n.cni.AddNetworkList(context.Background(), n.list, p.rt)
	p.returned = time.Now()
	if err != nil {
		return fmt.Errorf("CNI ADD %s: %w", p.name, err)
	}
	p.added = true
	p.veth, err = hostVeth(res)
	return err
}

// hostVeth is the interface a bridge result names outside the sandbox,
// the bridge aside.
func hostVeth(res types.Result) (string, error) {
	cur, err := current.NewResultFromResult(res)
	if err != nil {
		return "", err
	}
	for _, i := range cur.Interfaces {
		if i.Sandbox == "" && i.Name != podsBridge {
			return i.Name, nil
		}
	}
	return "", fmt.Errorf("the CNI result names no host veth: %v", cur.Interfaces)
}

// remove runs CNI DEL for p and lets its namespace go.
func (n *cniNet) remove(p *benchPod) error {
	var errs []error
	if p.added {
		if err := n.cni.DelNetworkList(context.Background(), n.list, p.rt); err != nil {
			errs = append(errs, fmt.Errorf("CNI DEL %s: %w", p.name, err))
		}
		p.added = false
	}
	if p.nsMade {
		errs = append(errs, unix.Unmount(p.nsPath, unix.MNT_DETACH), os.Remove(p.nsPath))
		p.nsMade = false
	}
	return errors.Join(errs...)
}

// removeAll removes ps, a few at a time.
func (n *cniNet) removeAll(ps []*benchPod) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	work := make(chan *benchPod)
	for range 4 {
		wg.Go(func() {
			for p := range work {
				if err := n.remove(p); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, p := range ps {
		work <- p
	}
	close(work)
	wg.Wait()
	return errors.Join(errs...)
}

func (n *cniNet) close() error {
	err := n.removeAll(n.made)
	if l, lerr := netlink.LinkByName(podsBridge); lerr == nil {
		err = errors.Join(err, netlink.LinkDel(l))
	}
	return errors.Join(err, os.RemoveAll(n.dir))
}

// addWatched runs CNI ADD for every pod of ps at once (their sandboxes
// made), while polling d's snapshots without pause, and notes when each
// pod's host veth was first counted and first counted under the pod's name.
func (n *cniNet) addWatched(d *datapath.Datapath, ps []*benchPod) error {
	var s snapshot.Snapshot
	if err := d.Snapshot(&s); err != nil {
		return err
	}
	already := map[string]bool{}
	for _, i := range s.Interfaces {
		already[i.Name] = true
	}
	want := map[string]*benchPod{}
	for _, p := range ps {
		want[p.uid] = p
	}
	seen := map[string]time.Time{}
	namedOn := map[string]string{}

	// When each new link appeared here, by name, as netlink tells this
	// process (and the agent) of it.
	var (
		createdMu sync.Mutex
		created   = map[string]time.Time{}
	)
	updates, stop := make(chan netlink.LinkUpdate, 4096), make(chan struct{})
	if err := netlink.LinkSubscribeWithOptions(updates, stop, netlink.LinkSubscribeOptions{ReceiveBufferSize: 1 << 20}); err != nil {
		return err
	}
	subscribed := make(chan struct{})
	go func() {
		defer close(subscribed)
		for u := range updates {
			now := time.Now()
			if u.Header.Type != unix.RTM_NEWLINK {
				continue
			}
			createdMu.Lock()
			if _, ok := created[u.Attrs().Name]; !ok {
				created[u.Attrs().Name] = now
			}
			createdMu.Unlock()
		}
	}()
	defer func() { close(stop); <-subscribed }()

	gate := make(chan struct{})
	errc := make(chan error, len(ps))
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() {
			<-gate
			errc <- n.add(p)
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	close(gate)

	finished := false
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if err := d.Snapshot(&s); err != nil {
			<-done
			return err
		}
		now := time.Now()
		for k := range s.Interfaces {
			in := &s.Interfaces[k]
			if _, ok := seen[in.Name]; !ok && !already[in.Name] {
				seen[in.Name] = now
			}
			if in.Pod != nil {
				if p := want[in.Pod.UID]; p != nil && p.named.IsZero() {
					p.named, namedOn[p.uid] = now, in.Name
				}
			}
		}
		if !finished {
			select {
			case <-done: // every ADD returned: the pods are ours to read
				finished = true
				close(errc)
				var errs []error
				for err := range errc {
					errs = append(errs, err)
				}
				if err := errors.Join(errs...); err != nil {
					return err
				}
			default:
			}
		}
		if finished && len(namedOn) == len(ps) {
			break
		}
		if now.After(deadline) {
			<-done
			return fmt.Errorf("%d of %d pods counted under their names after 2 minutes", len(namedOn), len(ps))
		}
	}
	createdMu.Lock()
	defer createdMu.Unlock()
	for _, p := range ps {
		if namedOn[p.uid] != p.veth {
			return fmt.Errorf("pod %s named on %s, but its host veth is %s", p.name, namedOn[p.uid], p.veth)
		}
		p.seen = seen[p.veth]
		if p.created = created[p.veth]; p.created.IsZero() {
			return fmt.Errorf("no RTM_NEWLINK heard for %s", p.veth)
		}
	}
	return nil
}
