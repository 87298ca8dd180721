package main

import (
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// checkRendered runs the checks of TestKubernetesManifests on one
// rendering of the chart, whatever objects it has; the counting DaemonSet
// mounts pods for pod attribution.
func checkRendered(t *testing.T, r rendered, pods podsDirs) {
	t.Helper()
	sidecars := map[string]corev1.Container{}
	collectors := map[string]corev1.PodSpec{}
	senders := map[string]corev1.Container{}
	var configs []configFile
	for _, ds := range findAll[appsv1.DaemonSet](r.ms, "DaemonSet") {
		what := "DaemonSet " + ds.Name
		spec := ds.Spec.Template.Spec
		seccomp := volumeNamed(t, spec, "seccomp-profile").ConfigMap
		if seccomp == nil {
			t.Fatalf("%s: the seccomp profile is no ConfigMap", what)
		}
		configs = append(configs, configFile{seccomp.Name, "ebpfnet.json", "../container/seccomp.json"})
		checkAgentDaemonSet(t, ds, seccomp.Name)
		if len(spec.Containers) != 1 {
			t.Errorf("%s: containers %d", what, len(spec.Containers))
		}
		c := spec.Containers[0]
		checkCounting(t, what, c)
		switch c.Name {
		case "ebpfnet":
			sidecars[what] = c
		case "otelcol":
			collectors[what] = spec
			cm := volumeNamed(t, spec, "config").ConfigMap
			if cm == nil {
				t.Fatalf("%s: the configuration is no ConfigMap", what)
			}
			configs = append(configs, configFile{cm.Name, "agent.yaml", "../otelcol/agent.yaml"})
		default:
			t.Errorf("%s: container %s", what, c.Name)
		}
		// Sending to the gateway unless told otherwise.
		if env := envOf(t, c, nil); strings.HasSuffix(env["OTEL_EXPORTER_OTLP_ENDPOINT"]+env["OTLP_GATEWAY"], ".svc:4317") {
			senders[what] = c
		}
		// hostPath volumes: exactly the kubelet's seccomp directory, the
		// node's bpffs for the pins, and pod attribution's directories
		// when it is on, mounted as TestKubernetesManifests wants them;
		// the collector told when it is off.
		hostPaths := []string{"/var/lib/kubelet/seccomp"}
		if slices.Contains(c.Args, "--pin-path") {
			hostPaths = append(hostPaths, "/sys/fs/bpf")
		}
		if pods != (podsDirs{}) {
			hostPaths = append(hostPaths, pods.cniCache, pods.netns)
		}
		checkHostPaths(t, what, spec, hostPaths...)
		checkPods(t, what, spec, c, pods)
		if off := slices.Contains(c.Args, "--set=receivers::ebpfnet::pods::enabled=false"); c.Name == "otelcol" && off != (pods == podsDirs{}) {
			t.Errorf("%s: pods %+v, yet args %q", what, pods, c.Args)
		}
	}
	if len(sidecars)+len(collectors) != 1 {
		t.Errorf("want one counting DaemonSet, got %s", strings.Join(r.objects(), ", "))
	}
	for _, gw := range findAll[appsv1.Deployment](r.ms, "Deployment") {
		checkGatewayPrivileges(t, gw)
		collectors["Deployment "+gw.Name] = gw.Spec.Template.Spec
		configs = append(configs, configFile{volumeNamed(t, gw.Spec.Template.Spec, "config").ConfigMap.Name, "gateway.yaml", "../otelcol/gateway.yaml"})
		checkSendToGateway(t, find[corev1.Service](t, r.ms, "Service", gw.Name), gw, senders)
	}
	for _, sa := range findAll[corev1.ServiceAccount](r.ms, "ServiceAccount") {
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Errorf("ServiceAccount %s: automounts its token", sa.Name)
		}
	}
	checkConfigMapsVerbatim(t, r.ms, configs)
	checkBinariesAccept(t, r.ms, sidecars, collectors)
}

// checkGatewayPrometheus checks the gateway's exporters: OTLP alone
// (GATEWAY_EXPORTERS [otlp_http], no port 8890), or with Prometheus too
// ([prometheus, otlp_http], port 8890 on the pod and the Service).
func checkGatewayPrometheus(t *testing.T, r rendered, name string, on bool) {
	t.Helper()
	gw := find[appsv1.Deployment](t, r.ms, "Deployment", name)
	c := container(t, gw.Spec.Template.Spec, "otelcol")
	want := "[otlp_http]"
	if on {
		want = "[prometheus, otlp_http]"
	}
	if got := envOf(t, c, nil)["GATEWAY_EXPORTERS"]; got != want {
		t.Errorf("Deployment %s: GATEWAY_EXPORTERS %q, want %q", name, got, want)
	}
	podPort := slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "metrics" && p.ContainerPort == 8890 })
	if podPort != on || slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == 8890 && p.Name != "metrics" }) {
		t.Errorf("Deployment %s: Prometheus %v, yet ports %+v", name, on, c.Ports)
	}
	svc := find[corev1.Service](t, r.ms, "Service", name)
	svcPort := slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == 8890 && p.TargetPort.StrVal == "metrics" })
	if svcPort != on || slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == 8890 && p.TargetPort.StrVal != "metrics" }) {
		t.Errorf("Service %s: Prometheus %v, yet ports %+v", name, on, svc.Spec.Ports)
	}
}

func volumeNamed(t *testing.T, spec corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	return volume(t, spec, corev1.VolumeMount{Name: name})
}

// checkArgs checks a container's arguments, exactly.
func checkArgs(t *testing.T, c corev1.Container, want ...string) {
	t.Helper()
	if !slices.Equal(c.Args, want) {
		t.Errorf("container %s: args %q, want %q", c.Name, c.Args, want)
	}
}

// checkSameObjects checks that the rendering has exactly the objects of
// the example files (under examples/kubernetes, or absolute paths), each
// equal to the example's once decoded.
func checkSameObjects(t *testing.T, r rendered, examples ...string) {
	t.Helper()
	var files []string
	for _, e := range examples {
		if !filepath.IsAbs(e) {
			e = filepath.Join(manifestDir, e)
		}
		files = append(files, e)
	}
	want, err := decodeManifests(files)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.objects(), (rendered{ms: want}).objects(); !slices.Equal(got, want) {
		t.Fatalf("the chart renders %q, the examples have %q", got, want)
	}
	for _, w := range want {
		i := slices.IndexFunc(r.ms, func(m manifest) bool { return m.kind == w.kind && m.name == w.name })
		if got := r.ms[i]; !reflect.DeepEqual(got.obj, w.obj) {
			gy, _ := yaml.Marshal(got.obj)
			wy, _ := yaml.Marshal(w.obj)
			t.Errorf("%s %s differs from %s's:\n%s", w.kind, w.name, w.file, lineDiff(string(wy), string(gy)))
		}
	}
}

// lineDiff shows how b's lines differ from a's ("-" a's, "+" b's).
func lineDiff(a, b string) string {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	// Longest common subsequence, by dynamic programming.
	l := make([][]int, len(x)+1)
	for i := range l {
		l[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				l[i][j] = l[i+1][j+1] + 1
			} else {
				l[i][j] = max(l[i+1][j], l[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			i, j = i+1, j+1
		case j < len(y) && (i == len(x) || l[i][j+1] >= l[i+1][j]):
			fmt.Fprintf(&out, "+ %s\n", y[j])
			j++
		default:
			fmt.Fprintf(&out, "- %s\n", x[i])
			i++
		}
	}
	return out.String()
}
