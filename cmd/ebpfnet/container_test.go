package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/ebpfnet/ebpfnet/internal/otlptest"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// make image builds the sidecar's image; podman runs it in a network
// namespace of the test's with CAP_BPF and CAP_NET_ADMIN only and the
// shipped seccomp profile, and it counts exactly: once as the image runs by
// default (as nobody), once as examples/kubernetes' DaemonSet runs it (its
// user, capabilities, seccomp profile, arguments, environment and volumes,
// with the pin path on a bpffs), through a restart over the pins as in a
// rolling update; and the custom Collector's image (make image-otelcol) as
// the Collector agent's DaemonSet runs it. (runc, not crun, and the rlimits passed explicitly: this
// sandbox cannot raise them.)
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

	t.Run("as the image runs", func(t *testing.T) {
		c := newContainerNS(t)
		run := c.start(t, image, []string{"--security-opt", "seccomp=../../examples/container/seccomp.json"},
			[]string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + c.srv.Addr, "OTEL_EXPORTER_OTLP_INSECURE=true"},
			"--interfaces", c.pair.Local, "--interval", "1s")
		waitValues(t, c.srv, attachedIs(1))
		c.privileges(t, "65534")
		sent := c.send(t)
		c.exact(t, sent)
		c.stop(t, run)
		c.detached(t)
	})

	t.Run("as DaemonSet ebpfnet runs it", func(t *testing.T) {
		ms, err := decodeManifests([]string{filepath.Join(manifestDir, "ebpfnet-daemonset.yaml"), filepath.Join(manifestDir, "seccomp-profile.yaml")})
		if err != nil {
			t.Fatal(err)
		}
		ds := find[appsv1.DaemonSet](t, ms, "DaemonSet", "ebpfnet")
		spec := ds.Spec.Template.Spec
		ctr := container(t, spec, "ebpfnet")
		c := newContainerNS(t)
		// The manifest's environment with the downward API's values for
		// this namespace (its loopback is the pod's address here), and the
		// test's OTLP receiver for the gateway's Service.
		envList := podEnv(t, ctr, map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + c.srv.Addr,
			"OTEL_METRIC_EXPORT_INTERVAL": "1000",
		})
		flags := podmanFlags(t, ms, spec, ctr)
		pins := filepath.Join("/sys/fs/bpf", "ebpfnet")
		if !slices.Contains(ctr.Args, pins) {
			t.Fatalf("the DaemonSet's pin path is not %s: %q", pins, ctr.Args)
		}
		removePins(t, pins)

		first := c.start(t, image, flags, envList, ctr.Args...)
		waitValues(t, c.srv, attachedIs(1))
		c.privileges(t, "0")
		c.probeAnswers(t, ctr)
		sent := c.send(t)
		c.exact(t, sent)

		// A rolling update with maxSurge 0: the old pod goes, traffic goes
		// on with no pod running, the new pod takes the pins over. Nothing
		// is lost, nothing counted twice.
		c.stop(t, first)
		if got := c.attachments(t); len(got) != 2 {
			t.Fatalf("between the pods, attached: %v; want both hooks still counting", got)
		}
		c.send(t)
		second := c.start(t, image, flags, envList, ctr.Args...)
		twice := make([]otlptest.Series, len(sent))
		for i, s := range sent {
			twice[i] = s
			twice[i].Packets, twice[i].Bytes = 2*s.Packets, 2*s.Bytes
		}
		c.exact(t, twice)
		c.stop(t, second)
		if err := os.RemoveAll(pins); err != nil {
			t.Fatal(err)
		}
		c.detached(t)
	})

	// The custom Collector's image as otelcol-agent.yaml runs it: the same
	// privileges, its configuration from the ConfigMap, the receiver's
	// counts exact at the (test's) gateway.
	t.Run("as DaemonSet otelcol-ebpfnet-agent runs it", func(t *testing.T) {
		if _, err := os.Stat("../../bin/otelcol-ebpfnet"); err != nil {
			testenv.Missing(t, "bin/otelcol-ebpfnet is not built: run make otelcol, or make test")
		}
		image := fmt.Sprintf("localhost/otelcol-ebpfnet:test-%d", os.Getpid())
		// -o otelcol: the Collector built already, not again.
		build := exec.Command("make", "-C", "../..", "--no-print-directory", "-o", "otelcol", "image-otelcol", "IMAGE_OTELCOL="+image)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("make image-otelcol: %v\n%s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("podman", "rmi", "-f", image).Run() })
		ms, err := decodeManifests([]string{filepath.Join(manifestDir, "otelcol-agent.yaml"), filepath.Join(manifestDir, "seccomp-profile.yaml")})
		if err != nil {
			t.Fatal(err)
		}
		spec := find[appsv1.DaemonSet](t, ms, "DaemonSet", "otelcol-ebpfnet-agent").Spec.Template.Spec
		ctr := container(t, spec, "otelcol")
		c := newContainerNS(t)
		run := c.start(t, image, podmanFlags(t, ms, spec, ctr), podEnv(t, ctr, map[string]string{
			"OTLP_GATEWAY":                c.srv.Addr,
			"EBPFNET_COLLECTION_INTERVAL": "1s",
		}), ctr.Args...)
		waitValues(t, c.srv, attachedIs(1))
		c.privileges(t, "0")
		c.probeAnswers(t, ctr)
		sent := c.send(t)
		c.exact(t, sent)
		c.stop(t, run)
		c.detached(t)
	})
}

// podIP is the pod's address in the container tests: the namespace's
// loopback, where the probes and the Prometheus endpoint are.
const podIP = "127.0.0.1"

// shortIntervals are the variables podEnv may add: the tests' intervals.
var shortIntervals = map[string]bool{"OTEL_METRIC_EXPORT_INTERVAL": true, "EBPFNET_COLLECTION_INTERVAL": true}

// podEnv is the container's environment as Kubernetes gives it, with the
// downward API's values for the test's namespace, and with the given
// variables replaced (the gateway's Service becomes the test's receiver).
func podEnv(t *testing.T, c corev1.Container, replace map[string]string) []string {
	t.Helper()
	env := envOf(t, c, map[string]string{"spec.nodeName": "node1", "status.podIP": podIP})
	for k, v := range replace {
		if _, ok := env[k]; !ok && !shortIntervals[k] {
			t.Fatalf("container %s has no %s to replace", c.Name, k)
		}
		env[k] = v
	}
	var list []string
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	return list
}

// probeAnswers waits until the container's liveness probe, sent where the
// kubelet sends it (the pod's address), gets 200 OK.
func (c *containerNS) probeAnswers(t *testing.T, ctr corev1.Container) {
	t.Helper()
	probe := ctr.LivenessProbe.HTTPGet
	port := probe.Port.IntValue()
	for _, p := range ctr.Ports {
		if p.Name == probe.Port.StrVal {
			port = int(p.ContainerPort)
		}
	}
	url := fmt.Sprintf("http://%s:%d%s", podIP, port, probe.Path)
	var status string
	if !testenv.Eventually(testenv.Patience, func() bool {
		c.in(t, func() error { status = httpGetHere(url); return nil })
		return status == "200 OK"
	}) {
		t.Fatalf("liveness probe %s: %s", url, status)
	}
}

// containerNS is a network namespace of the test's for a container (not
// the test's own, which runc would take for its host's), with the
// interface to count and the OTLP receiver in it.
type containerNS struct {
	ns    netns.NsHandle
	srv   *otlptest.Server
	pair  *testenv.Pair
	kbase testenv.Stats
	name  string
}

func newContainerNS(t *testing.T) *containerNS {
	t.Helper()
	c := &containerNS{ns: testenv.NewNetns(t)}
	c.in(t, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		if c.srv, err = otlptest.Listen("127.0.0.1:0"); err != nil {
			return err
		}
		c.pair, err = testenv.CreatePair("image0")
		return err
	})
	t.Cleanup(c.srv.Stop)
	t.Cleanup(func() { _ = testenv.RunIn(c.ns, func() error { c.pair.Close(); return nil }) })
	c.in(t, func() error { testenv.WaitQuiet(t, c.pair.Local, 300*time.Millisecond); return nil })
	c.kbase = c.stats(t)
	return c
}

func (c *containerNS) in(t *testing.T, fn func() error) {
	t.Helper()
	if err := testenv.RunIn(c.ns, fn); err != nil {
		t.Fatal(err)
	}
}

func (c *containerNS) stats(t *testing.T) (s testenv.Stats) {
	c.in(t, func() error { s = testenv.LinkStats(t, c.pair.Local); return nil })
	return s
}

func (c *containerNS) send(t *testing.T) (sent []otlptest.Series) {
	c.in(t, func() error { sent = otlptest.SendKnown(t, c.pair); return nil })
	return sent
}

func (c *containerNS) attachments(t *testing.T) (got []string) {
	c.in(t, func() error { got = testenv.Attachments(t, c.pair.LocalIndex); return nil })
	return got
}

// exact waits until the export's counts of the interface are want, and its
// totals the kernel's.
func (c *containerNS) exact(t *testing.T, want []otlptest.Series) {
	t.Helper()
	waitValues(t, c.srv, func(v map[string]int64) bool {
		return otlptest.Matches(v, c.pair.Local, want, c.stats(t).Sub(c.kbase))
	})
}

// stop stops the container as the kubelet does, with SIGTERM, and wants
// exit 0.
func (c *containerNS) stop(t *testing.T, run *sidecar) {
	t.Helper()
	if code := run.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("podman run: exit %d", code)
	}
}

// detached waits until nothing is attached to the interface: the kernel
// releases a link whose pin was removed from a work queue, not at once.
func (c *containerNS) detached(t *testing.T) {
	t.Helper()
	var got []string
	if !testenv.Eventually(testenv.Patience, func() bool { got = c.attachments(t); return len(got) == 0 }) {
		t.Errorf("still attached after the container stopped: %v", got)
	}
}

// start runs the image in the namespace with the given podman flags,
// environment and arguments, and only CAP_BPF and CAP_NET_ADMIN.
func (c *containerNS) start(t *testing.T, image string, flags, env []string, args ...string) *sidecar {
	t.Helper()
	c.name = fmt.Sprintf("ebpfnet-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	run := []string{"run", "--rm", "--name", c.name, "--runtime", "runc",
		"--network", fmt.Sprintf("ns:/proc/%d/fd/%d", os.Getpid(), int(c.ns)),
		"--cap-drop=all", "--cap-add=CAP_BPF,CAP_NET_ADMIN",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}
	run = append(run, flags...)
	for _, e := range env {
		run = append(run, "-e", e)
	}
	return startCommand(t, nil, "podman", append(append(run, image), args...)...)
}

// privileges checks the container's process: the uid, and effective and
// bounding capabilities of exactly CAP_BPF and CAP_NET_ADMIN.
func (c *containerNS) privileges(t *testing.T, uid string) {
	t.Helper()
	out, err := exec.Command("podman", "inspect", "--format", "{{.State.Pid}}", c.name).Output()
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
	if got := statusField(t, pid, "Uid"); got != uid {
		t.Errorf("in the container: uid %s, want %s", got, uid)
	}
}

// podmanFlags are the podman run flags for what the pod spec gives the
// container beyond the image: its user, no privilege escalation, a
// read-only root, the seccomp profile (Localhost: the ConfigMap the
// DaemonSet installs it from), the memory limit, and its hostPath and
// ConfigMap volumes.
// The capabilities are checked here and given by start; the host network
// is the test's namespace.
func podmanFlags(t *testing.T, ms []manifest, spec corev1.PodSpec, c corev1.Container) []string {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil || sc.RunAsUser == nil || sc.RunAsGroup == nil || sc.Capabilities == nil {
		t.Fatalf("container %s: no user or capabilities", c.Name)
	}
	if got := fmt.Sprint(sc.Capabilities.Drop, sc.Capabilities.Add); got != "[ALL] [BPF NET_ADMIN]" {
		t.Fatalf("container %s: capabilities %s; the test runs it with CAP_BPF and CAP_NET_ADMIN", c.Name, got)
	}
	if !spec.HostNetwork {
		t.Fatalf("container %s: not on the host network, which the test's namespace stands for", c.Name)
	}
	flags := []string{"--user", fmt.Sprintf("%d:%d", *sc.RunAsUser, *sc.RunAsGroup)}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		flags = append(flags, "--security-opt", "no-new-privileges")
	}
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		flags = append(flags, "--read-only")
	}
	if p := sc.SeccompProfile; p != nil && p.Type == corev1.SeccompProfileTypeLocalhost {
		profile := filepath.Join(t.TempDir(), *p.LocalhostProfile)
		data := find[corev1.ConfigMap](t, ms, "ConfigMap", "ebpfnet-seccomp").Data[*p.LocalhostProfile]
		if err := os.WriteFile(profile, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		flags = append(flags, "--security-opt", "seccomp="+profile)
	} else {
		t.Fatalf("container %s: seccomp profile %+v", c.Name, p)
	}
	if m, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		flags = append(flags, "--memory", fmt.Sprint(m.Value()))
	}
	for _, m := range c.VolumeMounts {
		v := volume(t, spec, m)
		var source string
		switch {
		case v.HostPath != nil:
			source = v.HostPath.Path
			// A hostPath of type "" that is missing is created by the
			// runtime (containerd and CRI-O both do), where podman refuses.
			if v.HostPath.Type == nil || *v.HostPath.Type == "" || *v.HostPath.Type == corev1.HostPathDirectoryOrCreate {
				if err := os.MkdirAll(source, 0o755); err != nil {
					t.Fatal(err)
				}
			}
		case v.ConfigMap != nil:
			source = t.TempDir()
			for k, data := range find[corev1.ConfigMap](t, ms, "ConfigMap", v.ConfigMap.Name).Data {
				if err := os.WriteFile(filepath.Join(source, k), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		default:
			t.Fatalf("container %s: volume %s is neither a hostPath nor a ConfigMap, which the test gives", c.Name, v.Name)
		}
		bind := source + ":" + m.MountPath
		if m.ReadOnly {
			bind += ":ro"
		}
		flags = append(flags, "-v", bind)
	}
	return flags
}

// httpGetHere makes a GET request from this thread's network namespace
// (http.Client dials on a goroutine of its own, which may be elsewhere)
// and returns the status, or the error.
func httpGetHere(url string) string {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err.Error()
	}
	conn, err := net.Dial("tcp", req.URL.Host)
	if err != nil {
		return err.Error()
	}
	defer conn.Close()
	if err := req.Write(conn); err != nil {
		return err.Error()
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return err.Error()
	}
	resp.Body.Close()
	return resp.Status
}
