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
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
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

func cniConfig() string {
	return `{
  "cniVersion": "1.0.0",
  "name": "` + networkName + `",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "` + bridgeName + `",
      "isGateway": true,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "` + subnet + `", "gateway": "` + Gateway.String() + `"}]]
      }
    }
  ]
}
`
}

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

const (
	addrGenModeDefault = "/proc/sys/net/ipv6/conf/default/addr_gen_mode"
	// Turned on by the bridge plugin, for the gateway.
	ipForward = "/proc/sys/net/ipv4/ip_forward"
)

// quietBridge makes the pods' network silent, as testenv's veth pairs
// are, so that the only traffic on a pod's veth is what the test sends:
// while the harness runs, new interfaces in the test's network namespace
// (the host-side veths) get no IPv6 link-local address, hence send no DAD,
// MLD or router solicitation; and the bridge, made here for the bridge
// plugin to take, has no IPv6 and no multicast snooping (which would join
// the all-snoopers groups and report them). The pods themselves have IPv6
// off (QuietSysctls).
func (h *Harness) quietBridge(t testing.TB) {
	t.Helper()
	h.sysctls = map[string][]byte{}
	for _, path := range []string{addrGenModeDefault, ipForward} {
		v, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		h.sysctls[path] = v
	}
	if err := os.WriteFile(addrGenModeDefault, []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := netlink.LinkByName(bridgeName); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			t.Fatal(err)
		}
	}
	off := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName}, MulticastSnooping: &off}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatalf("bridge %s: %v", bridgeName, err)
	}
	if err := os.WriteFile(filepath.Join("/proc/sys/net/ipv6/conf", bridgeName, "disable_ipv6"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (h *Harness) bindMount(src, target string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mount %s on %s: %w", src, target, err)
	}
	h.mounts = append(h.mounts, target)
	return nil
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

// mountsUnder lists the mount points under dir, deepest first.
func (h *Harness) mountsUnder(dir string) []string {
	var out []string
	for _, m := range readMountinfo() {
		if strings.HasPrefix(m.path, dir+"/") {
			out = append(out, m.path)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

type mountEntry struct {
	path, fstype, optional string
}

func readMountinfo() []mountEntry {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 6 || len(g) < 1 {
			continue
		}
		out = append(out, mountEntry{path: unescapeMount(f[4]), fstype: g[0], optional: strings.Join(f[6:], " ")})
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// sharedMounts lists the mount points that propagate mounts to other
// mount namespaces: none in testenv.Main's private mount namespace.
func sharedMounts() []string {
	var out []string
	for _, m := range readMountinfo() {
		if strings.Contains(m.optional, "shared:") {
			out = append(out, m.path)
		}
	}
	return out
}

// cgroupRoots lists the cgroup hierarchies mounted under /sys/fs/cgroup.
func cgroupRoots() []string {
	var out []string
	for _, m := range readMountinfo() {
		if (m.fstype == "cgroup" || m.fstype == "cgroup2") && strings.HasPrefix(m.path, "/sys/fs/cgroup/") {
			out = append(out, m.path)
		}
	}
	if len(out) == 0 { // cgroup2 alone, on /sys/fs/cgroup
		out = append(out, "/sys/fs/cgroup")
	}
	return out
}

// missingKubepods lists the hierarchies' kubepods directories that do not
// exist yet.
func missingKubepods() []string {
	var out []string
	for _, root := range cgroupRoots() {
		d := filepath.Join(root, "kubepods")
		if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
			out = append(out, d)
		}
	}
	return out
}

// podCgroupParent is the kubelet's cgroupfs-driver parent of a best-effort
// pod's containers.
func podCgroupParent(uid string) string { return "/kubepods/besteffort/pod" + uid }

// removePodCgroups removes the pod's cgroup directories, which outlive its
// containers as they do under a kubelet (which removes them itself), in
// every hierarchy, deepest first.
func removePodCgroups(uid string) error {
	var errs []error
	for _, root := range cgroupRoots() {
		top := filepath.Join(root, podCgroupParent(uid))
		var dirs []string
		_ = filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := unix.Rmdir(dirs[i]); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

// rpcContext is the context of one call to containerd.
func rpcContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), rpcLimit)
}

// sandboxInfo is what the harness reads of a verbose PodSandboxStatus's
// "info": containerd's own view of the sandbox.
type sandboxInfo struct {
	Pid         int `json:"pid"`
	RuntimeSpec struct {
		Linux struct {
			Namespaces []struct {
				Type string `json:"type"`
				Path string `json:"path"`
			} `json:"namespaces"`
		} `json:"linux"`
	} `json:"runtimeSpec"`
}

func parseSandboxInfo(info map[string]string) (sandboxInfo, error) {
	var si sandboxInfo
	raw, ok := info["info"]
	if !ok {
		return si, errors.New("verbose sandbox status has no info")
	}
	err := json.Unmarshal([]byte(raw), &si)
	return si, err
}
