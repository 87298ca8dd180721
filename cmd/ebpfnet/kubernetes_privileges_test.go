package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// checkCounting checks a container that counts: CAP_BPF and CAP_NET_ADMIN
// and nothing else, not privileged, no privilege escalation, a read-only
// root, uid 0, the Localhost seccomp profile ebpfnet.json.
func checkCounting(t *testing.T, what string, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Errorf("%s: no capabilities", what)
		return
	}
	if got := fmt.Sprint(sc.Capabilities.Drop, sc.Capabilities.Add); got != "[ALL] [BPF NET_ADMIN]" {
		t.Errorf("%s: capabilities drop, add %s; want [ALL] [BPF NET_ADMIN]", what, got)
	}
	if sc.Privileged != nil && *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: want not privileged, no privilege escalation, a read-only root", what)
	}
	// Kubernetes gives added capabilities to uid 0 alone.
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Errorf("%s: runAsUser %v; the capabilities need uid 0 under Kubernetes", what, sc.RunAsUser)
	}
	if p := sc.SeccompProfile; p == nil || p.Type != corev1.SeccompProfileTypeLocalhost || p.LocalhostProfile == nil || *p.LocalhostProfile != "ebpfnet.json" {
		t.Errorf("%s: seccomp profile %+v; want Localhost ebpfnet.json", what, p)
	}
}

// checkAgentDaemonSet checks a counting DaemonSet: its init container
// copies the profile from the ConfigMap into the kubelet's seccomp
// directory, under the name the containers give, with no capability; it
// runs on the host network with the cluster's DNS; it rolls with maxSurge
// 0; and no container in it has more than the counting ones.
func checkAgentDaemonSet(t *testing.T, ds appsv1.DaemonSet, seccompConfigMap string) {
	t.Helper()
	spec := ds.Spec.Template.Spec
	init := container(t, spec, "seccomp-profile")
	if got := strings.Join(init.Command, " "); got != "cp /profile/ebpfnet.json /seccomp/ebpfnet.json" {
		t.Errorf("DaemonSet %s: seccomp-profile runs %q", ds.Name, got)
	}
	if v := volume(t, spec, mountOf(t, init, "/seccomp")); v.HostPath == nil || v.HostPath.Path != "/var/lib/kubelet/seccomp" {
		t.Errorf("DaemonSet %s: the profile goes to %+v, not the kubelet's seccomp directory", ds.Name, v.VolumeSource)
	}
	if v := volume(t, spec, mountOf(t, init, "/profile")); v.ConfigMap == nil || v.ConfigMap.Name != seccompConfigMap {
		t.Errorf("DaemonSet %s: the profile comes from %+v, not ConfigMap %s", ds.Name, v.VolumeSource, seccompConfigMap)
	}
	if sc := init.SecurityContext; sc == nil || sc.Capabilities == nil || fmt.Sprint(sc.Capabilities.Drop, sc.Capabilities.Add) != "[ALL] []" ||
		sc.Privileged != nil && *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("DaemonSet %s: the init container wants no capability and no privilege: %+v", ds.Name, sc)
	}
	if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("DaemonSet %s: want hostNetwork with dnsPolicy ClusterFirstWithHostNet", ds.Name)
	}
	if u := ds.Spec.UpdateStrategy.RollingUpdate; u == nil || u.MaxSurge == nil || u.MaxSurge.IntValue() != 0 {
		t.Errorf("DaemonSet %s: maxSurge must be 0 (one owner per pin path, one identity per node)", ds.Name)
	}
	if spec.HostPID || spec.HostIPC || spec.ShareProcessNamespace != nil && *spec.ShareProcessNamespace {
		t.Errorf("DaemonSet %s: host PID, host IPC or a shared process namespace", ds.Name)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("DaemonSet %s: mounts a service account token", ds.Name)
	}
}

// podsDirs are the node's directories a counting DaemonSet mounts for pod
// attribution: libcni's cache, mounted at /var/lib/cni (where both agents
// read it by default), and the directory the cached results name the
// pods' network namespaces under, mounted at the same path (the agents
// open the paths the results give). Zero: pods off, neither mounted.
type podsDirs struct{ cniCache, netns string }

// defaultPodsDirs are containerd's and CRI-O's defaults: /var/run/netns,
// not /run/netns, since the images (FROM scratch) have no /var/run link.
var defaultPodsDirs = podsDirs{cniCache: "/var/lib/cni", netns: "/var/run/netns"}

// checkPods reports podsProblems.
func checkPods(t *testing.T, what string, spec corev1.PodSpec, c corev1.Container, dirs podsDirs) {
	t.Helper()
	for _, p := range podsProblems(spec, c, dirs) {
		t.Errorf("%s: %s", what, p)
	}
}

// podsProblems says where the counting container c of spec mounts other
// than dirs say: the CNI cache from the node's dirs.cniCache at
// /var/lib/cni and the namespaces' directory dirs.netns at the same path,
// both read-only, whole (no subPath), hostPath type "" (a node without
// them still starts the pod), the namespaces with HostToContainer (those
// of pods started later); no mount with Bidirectional propagation; with
// zero dirs, neither.
func podsProblems(spec corev1.PodSpec, c corev1.Container, dirs podsDirs) []string {
	var out []string
	for _, m := range c.VolumeMounts {
		if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional {
			out = append(out, fmt.Sprintf("%s is mounted with Bidirectional propagation", m.MountPath))
		}
	}
	for _, want := range []struct {
		what, name, host, path string
		propagation            corev1.MountPropagationMode
	}{
		{"the CNI cache", "cni-cache", dirs.cniCache, "/var/lib/cni", corev1.MountPropagationNone},
		{"the network namespaces", "netns", dirs.netns, dirs.netns, corev1.MountPropagationHostToContainer},
	} {
		var v *corev1.Volume
		for i := range spec.Volumes {
			if spec.Volumes[i].Name == want.name {
				v = &spec.Volumes[i]
			}
		}
		var mounts []corev1.VolumeMount
		for _, m := range c.VolumeMounts {
			if m.Name == want.name {
				mounts = append(mounts, m)
			}
		}
		if dirs == (podsDirs{}) {
			if v != nil || len(mounts) != 0 {
				out = append(out, fmt.Sprintf("pods off, yet %s: volume %+v, mounts %+v", want.what, v, mounts))
			}
			continue
		}
		if v == nil || v.HostPath == nil || v.HostPath.Path != want.host || v.HostPath.Type != nil && *v.HostPath.Type != corev1.HostPathUnset {
			got := "missing"
			if v != nil && v.HostPath != nil {
				got = fmt.Sprintf("hostPath %s, type %q", v.HostPath.Path, ptrOr(v.HostPath.Type, ""))
			} else if v != nil {
				got = "not a hostPath"
			}
			out = append(out, fmt.Sprintf("%s: volume %s is %s, want the node's %s, type \"\"", want.what, want.name, got, want.host))
			continue
		}
		if len(mounts) != 1 {
			out = append(out, fmt.Sprintf("%s: container %s mounts volume %s %d times, want once", want.what, c.Name, want.name, len(mounts)))
			continue
		}
		m := mounts[0]
		propagation := ptrOr(m.MountPropagation, corev1.MountPropagationNone)
		if m.MountPath != want.path || !m.ReadOnly || m.SubPath != "" || m.SubPathExpr != "" || propagation != want.propagation {
			out = append(out, fmt.Sprintf("%s: mounted on %s%s, readOnly %v, propagation %s; want read-only on %s, propagation %s",
				want.what, m.MountPath, m.SubPath+m.SubPathExpr, m.ReadOnly, propagation, want.path, want.propagation))
		}
	}
	return out
}

// ptrOr is *p, or or where p is nil.
func ptrOr[T any](p *T, or T) T {
	if p == nil {
		return or
	}
	return *p
}

// checkHostPaths reports hostPathProblems.
func checkHostPaths(t *testing.T, what string, spec corev1.PodSpec, want ...string) {
	t.Helper()
	for _, p := range hostPathProblems(spec, want...) {
		t.Errorf("%s: %s", what, p)
	}
}

// hostPathProblems says how the pod's hostPath volumes differ from want:
// they must be exactly those paths of the node.
func hostPathProblems(spec corev1.PodSpec, want ...string) []string {
	var got []string
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			got = append(got, v.HostPath.Path)
		}
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		return []string{fmt.Sprintf("hostPath volumes %q, want exactly %q", got, want)}
	}
	return nil
}

// checkGatewayPrivileges: the gateway runs as nobody with no capability.
func checkGatewayPrivileges(t *testing.T, gateway appsv1.Deployment) {
	t.Helper()
	if sc := gateway.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("gateway: want runAsNonRoot")
	}
	if c := container(t, gateway.Spec.Template.Spec, "otelcol").SecurityContext; c == nil || c.Capabilities == nil || len(c.Capabilities.Add) != 0 {
		t.Errorf("gateway: wants no capability")
	}
}

// checkPinPath checks that the DaemonSet's ebpfnet pins in pinPath, on
// the node's bpffs mounted read-write.
func checkPinPath(t *testing.T, ds appsv1.DaemonSet, pinPath string) {
	t.Helper()
	spec := ds.Spec.Template.Spec
	c := container(t, spec, "ebpfnet")
	i := slices.Index(c.Args, "--pin-path")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("DaemonSet %s: no --pin-path in %q", ds.Name, c.Args)
	}
	mount := mountOf(t, c, "/sys/fs/bpf")
	if c.Args[i+1] != pinPath || !strings.HasPrefix(c.Args[i+1], "/sys/fs/bpf/") || mount.ReadOnly {
		t.Errorf("DaemonSet %s: pin path %s, mount %+v", ds.Name, c.Args[i+1], mount)
	}
	if v := volume(t, spec, mount); v.HostPath == nil || v.HostPath.Path != "/sys/fs/bpf" {
		t.Errorf("DaemonSet %s: /sys/fs/bpf is %+v, not the node's", ds.Name, v.VolumeSource)
	}
}
