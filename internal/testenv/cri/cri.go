//go:build linux

// Package cri runs real Kubernetes-shaped pods on the test machine without a
// cluster: a containerd of the test's own, driven through the CRI API as the
// kubelet drives it, with the CNI bridge plugin giving every pod a veth.
//
// It is for the tests of packages whose TestMain calls testenv.Main: there
// the test process is root in a network and mount namespace of its own, and
// containerd, started as its child, lives in both. So the CNI bridge and
// the pods' host-side veths appear in the test's namespace, and the harness
// can bind-mount a directory of its own on /var/lib/cni, libcni's cache
// root, which containerd 1.6 has no setting for.
//
// Start needs containerd (1.6), runc, the CNI plugins bridge, host-local
// and loopback in /usr/lib/cni, and a static busybox in /bin/busybox (the
// Debian packages containerd, runc, containernetworking-plugins and
// busybox-static), and the go command, which builds the pause image. Without
// them the test is skipped, or fails under EBPFNET_PRIVILEGED=require.
package cri

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The pods' network: a documentation range, on a bridge in the test's
// network namespace. The bridge holds the gateway address; the pods get no
// default route, and no IPv6.
const (
	networkName = "ebpfnet-test"
	bridgeName  = "ebpfcri0"
	subnet      = "203.0.113.0/24"
	cniBinDir   = "/usr/lib/cni"
	// libcni's cache root, which containerd 1.6 cannot be told about.
	cniCacheRoot = "/var/lib/cni"
	// Where containerd 1.6 puts its shims' sockets, whatever its state
	// directory: the harness mounts a directory of its own there too.
	shimSocketRoot = "/run/containerd"
	// The namespace of containerd's that the CRI plugin uses.
	criNamespace = "k8s.io"
)

// Gateway is the bridge's address, the pods' gateway: pods reach the test's
// network namespace there.
var Gateway = net.IPv4(203, 0, 113, 1)

// rpcLimit bounds every call to containerd, so that a hung containerd
// fails the test instead of hanging it. It is no measure of speed: calls
// return as soon as they are done.
const rpcLimit = 5 * testenv.Patience

// One harness at a time in a process: each mounts over /var/lib/cni.
var harnessMu sync.Mutex

// Harness is a containerd of the test's own, reached through the CRI API.
//
// While it runs, the test's network namespace has the pods' bridge, IPv4
// forwarding on (the bridge plugin's doing, for the gateway) and no IPv6
// link-local addresses on new interfaces (see quietBridge); all is as it
// was once the test ends. Only one harness runs at a time in a process:
// Start waits for the previous one's test to end.
type Harness struct {
	dir      string // everything of the harness's; removed at the end
	sock     string
	cniCache string
	logPath  string

	cmd    *exec.Cmd
	exited chan struct{} // closed when containerd has exited
	conn   *grpc.ClientConn
	rt     runtimeapi.RuntimeServiceClient
	img    runtimeapi.ImageServiceClient

	mounts []string // mounted by the harness, in order

	// Sysctls of the test's network namespace that the harness or the
	// bridge plugin change, as they were before Start.
	sysctls map[string][]byte

	// The kubepods cgroup directories that did not exist before, by
	// hierarchy: removed at the end if empty.
	newKubepods []string

	mu   sync.Mutex
	uids map[string]bool // every pod's UID, for the cgroup cleanup
}

// Start starts containerd for t, imports the pause and busybox images, and
// waits until its CRI runtime and network are ready. Everything is undone
// when t ends: the pods removed, containerd stopped, the mounts undone, the
// pods' cgroup directories removed.
//
// It skips t, or fails it under EBPFNET_PRIVILEGED=require, when the
// process is not root in testenv.Main's namespaces or a program it needs is
// missing.
func Start(t testing.TB) *Harness {
	t.Helper()
	testenv.Privileged(t)
	for _, bin := range []string{"containerd", "ctr", "runc", "containerd-shim-runc-v2", "go"} {
		if _, err := exec.LookPath(bin); err != nil {
			testenv.Missing(t, fmt.Sprintf("no %s in PATH (Debian: containerd, runc; go builds the pause image)", bin))
		}
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, plugin)); err != nil {
			testenv.Missing(t, fmt.Sprintf("no CNI plugin %s in %s (Debian: containernetworking-plugins)", plugin, cniBinDir))
		}
	}
	bbData, applets, err := busybox()
	if err != nil {
		testenv.Missing(t, fmt.Sprintf("no static busybox (Debian: busybox-static): %v", err))
	}
	// The harness mounts over /var/lib/cni and /run/containerd: that must
	// not reach the machine's mount namespace.
	if shared := sharedMounts(); len(shared) > 0 {
		t.Fatalf("mounts shared with other mount namespaces: %v: run the tests under testenv.Main", shared)
	}

	harnessMu.Lock()
	t.Cleanup(harnessMu.Unlock)

	dir, err := os.MkdirTemp("", "ebpfnet-cri-")
	if err != nil {
		t.Fatal(err)
	}
	h := &Harness{
		dir:      dir,
		sock:     filepath.Join(dir, "containerd.sock"),
		cniCache: filepath.Join(dir, "cni"),
		logPath:  filepath.Join(dir, "containerd.log"),
		uids:     map[string]bool{},
	}
	t.Cleanup(func() { h.close(t) })

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"net.d", "cni", "run", "root", "state", "runc", "pods", "images"} {
		must(os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	must(os.WriteFile(filepath.Join(dir, "net.d", "10-"+networkName+".conflist"), []byte(cniConfig()), 0o644))
	must(os.WriteFile(filepath.Join(dir, "config.toml"), []byte(h.containerdConfig()), 0o644))
	h.newKubepods = missingKubepods()

	h.quietBridge(t)
	// libcni's cache and the shims' sockets go to directories of the
	// harness's, in the test's mount namespace only.
	must(h.bindMount(h.cniCache, cniCacheRoot))
	must(h.bindMount(filepath.Join(dir, "run"), shimSocketRoot))

	h.startContainerd(t)
	h.importImages(t, bbData, applets)
	return h
}

// CNICacheDir is libcni's cache root as containerd's CNI plugins see it
// (mounted on /var/lib/cni): the cached results are in results/ there,
// one file per pod, named <network>-<sandbox ID>-eth0.
func (h *Harness) CNICacheDir() string { return h.cniCache }

// CNICacheFile is the path of the pod's cached CNI result under
// CNICacheDir.
func (h *Harness) CNICacheFile(p *Pod) string {
	return filepath.Join(h.cniCache, "results", networkName+"-"+p.SandboxID+"-eth0")
}

// NetworkName is the CNI network's name, the first part of a cache file's.
func (h *Harness) NetworkName() string { return networkName }

// BridgeName is the name of the pods' bridge in the test's network
// namespace. It holds Gateway from the first pod on.
func (h *Harness) BridgeName() string { return bridgeName }

// ContainerdPID is the containerd process's ID.
func (h *Harness) ContainerdPID() int { return h.cmd.Process.Pid }

// Runtime is the CRI runtime service client, for what the helpers do not
// cover.
func (h *Harness) Runtime() runtimeapi.RuntimeServiceClient { return h.rt }

// rpcContext is the context of one call to containerd.
func rpcContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), rpcLimit)
}
