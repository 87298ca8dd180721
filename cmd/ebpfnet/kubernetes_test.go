package main

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// The manifests under examples/kubernetes pass kubeconform in strict mode
// against Kubernetes' own schemas and decode strictly into k8s.io/api
// types, and a typo in them fails both; and they say what the rest of the
// repository says: the configurations are the example files, the
// privileges are the two capabilities, the pin path is on the node's
// bpffs with maxSurge 0, and the binaries accept the arguments and
// environment they are given.
func TestKubernetesManifests(t *testing.T) {
	files := manifestFiles(t)
	ms, err := decodeManifests(files)
	if err != nil {
		t.Fatalf("strict decoding: %v", err)
	}

	t.Run("kubeconform", func(t *testing.T) {
		run := kubeconform(t)
		checkKubeconform(t, run, len(ms), files...)
		// The checks bite: a misspelt field, a field in the wrong case.
		checkTyposFail(t, run, filepath.Join(manifestDir, "ebpfnet-daemonset.yaml"))
	})

	t.Run("configurations are the example files", func(t *testing.T) {
		checkConfigMapsVerbatim(t, ms, []configFile{
			{"ebpfnet-seccomp", "ebpfnet.json", "../container/seccomp.json"},
			{"otelcol-ebpfnet-agent", "agent.yaml", "../otelcol/agent.yaml"},
			{"ebpfnet-gateway", "gateway.yaml", "../otelcol/gateway.yaml"},
		})
	})

	sidecar := find[appsv1.DaemonSet](t, ms, "DaemonSet", "ebpfnet")
	agent := find[appsv1.DaemonSet](t, ms, "DaemonSet", "otelcol-ebpfnet-agent")
	app := find[appsv1.Deployment](t, ms, "Deployment", "example-app")
	gateway := find[appsv1.Deployment](t, ms, "Deployment", "ebpfnet-gateway")
	service := find[corev1.Service](t, ms, "Service", "ebpfnet-gateway")

	t.Run("privileges", func(t *testing.T) {
		checkCounting(t, "DaemonSet ebpfnet", container(t, sidecar.Spec.Template.Spec, "ebpfnet"))
		checkCounting(t, "DaemonSet otelcol-ebpfnet-agent", container(t, agent.Spec.Template.Spec, "otelcol"))
		checkCounting(t, "Deployment example-app", container(t, app.Spec.Template.Spec, "ebpfnet"))
		// The DaemonSets install the profile where the kubelet reads it,
		// under the name the containers give.
		for _, ds := range []appsv1.DaemonSet{sidecar, agent} {
			checkAgentDaemonSet(t, ds, "ebpfnet-seccomp")
		}
		checkGatewayPrivileges(t, gateway)
	})

	t.Run("pin path on the node's bpffs", func(t *testing.T) {
		checkPinPath(t, sidecar, "/sys/fs/bpf/ebpfnet")
	})

	// Pod attribution: both DaemonSets mount the node's CNI result cache
	// and network namespaces read-only (the namespaces with
	// HostToContainer), and these are the only hostPaths besides the
	// kubelet's seccomp directory and, for the pins, the bpffs.
	t.Run("pods", func(t *testing.T) {
		checkPods(t, "DaemonSet ebpfnet", sidecar.Spec.Template.Spec, container(t, sidecar.Spec.Template.Spec, "ebpfnet"), defaultPodsDirs)
		checkPods(t, "DaemonSet otelcol-ebpfnet-agent", agent.Spec.Template.Spec, container(t, agent.Spec.Template.Spec, "otelcol"), defaultPodsDirs)
		checkHostPaths(t, "DaemonSet ebpfnet", sidecar.Spec.Template.Spec,
			"/sys/fs/bpf", "/var/lib/cni", "/var/lib/kubelet/seccomp", "/var/run/netns")
		checkHostPaths(t, "DaemonSet otelcol-ebpfnet-agent", agent.Spec.Template.Spec,
			"/var/lib/cni", "/var/lib/kubelet/seccomp", "/var/run/netns")
		// A pod on the host network (this test's own pods) has no veth:
		// the example application's pod is not on it, and mounts nothing.
		if app.Spec.Template.Spec.HostNetwork || len(app.Spec.Template.Spec.Volumes) != 0 {
			t.Errorf("Deployment example-app: hostNetwork %v, volumes %+v", app.Spec.Template.Spec.HostNetwork, app.Spec.Template.Spec.Volumes)
		}

		// The checks bite: each of these breaks the sidecar's DaemonSet
		// and must be reported.
		for name, breakIt := range map[string]func(spec *corev1.PodSpec){
			"a writable CNI cache": func(spec *corev1.PodSpec) {
				mountIn(spec, "ebpfnet", "/var/lib/cni").ReadOnly = false
			},
			"a writable netns directory": func(spec *corev1.PodSpec) {
				mountIn(spec, "ebpfnet", "/var/run/netns").ReadOnly = false
			},
			"no HostToContainer": func(spec *corev1.PodSpec) {
				mountIn(spec, "ebpfnet", "/var/run/netns").MountPropagation = nil
			},
			"Bidirectional": func(spec *corev1.PodSpec) {
				p := corev1.MountPropagationBidirectional
				mountIn(spec, "ebpfnet", "/var/run/netns").MountPropagation = &p
			},
			"the namespaces elsewhere than the cache names them": func(spec *corev1.PodSpec) {
				mountIn(spec, "ebpfnet", "/var/run/netns").MountPath = "/run/netns"
			},
			"another node directory": func(spec *corev1.PodSpec) {
				volumeIn(spec, "cni-cache").HostPath.Path = "/etc/cni"
			},
			"type Directory": func(spec *corev1.PodSpec) {
				d := corev1.HostPathDirectory
				volumeIn(spec, "netns").HostPath.Type = &d
			},
			"no CNI cache": func(spec *corev1.PodSpec) {
				c := &spec.Containers[0]
				c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/var/lib/cni" })
			},
			"one more hostPath": func(spec *corev1.PodSpec) {
				spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "etc", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc"}}})
			},
		} {
			spec := sidecar.Spec.Template.Spec.DeepCopy()
			breakIt(spec)
			c := spec.Containers[0]
			problems := append(podsProblems(*spec, c, defaultPodsDirs),
				hostPathProblems(*spec, "/sys/fs/bpf", "/var/lib/cni", "/var/lib/kubelet/seccomp", "/var/run/netns")...)
			if len(problems) == 0 {
				t.Errorf("%s: no problem reported", name)
			} else {
				t.Logf("%s: %s", name, strings.Join(problems, "; "))
			}
		}
	})

	t.Run("they send to the gateway", func(t *testing.T) {
		checkSendToGateway(t, service, gateway, map[string]corev1.Container{
			"DaemonSet ebpfnet":               container(t, sidecar.Spec.Template.Spec, "ebpfnet"),
			"Deployment example-app":          container(t, app.Spec.Template.Spec, "ebpfnet"),
			"DaemonSet otelcol-ebpfnet-agent": container(t, agent.Spec.Template.Spec, "otelcol"),
		})
	})

	// The sidecar takes its arguments and environment, as given (the
	// downward API's values stand in), and so does the Collector its
	// configuration.
	t.Run("the binaries accept them", func(t *testing.T) {
		checkBinariesAccept(t, ms,
			map[string]corev1.Container{
				"DaemonSet ebpfnet":      container(t, sidecar.Spec.Template.Spec, "ebpfnet"),
				"Deployment example-app": container(t, app.Spec.Template.Spec, "ebpfnet"),
			},
			map[string]corev1.PodSpec{
				"DaemonSet otelcol-ebpfnet-agent": agent.Spec.Template.Spec,
				"Deployment ebpfnet-gateway":      gateway.Spec.Template.Spec,
			})
	})
}

// configFile is a ConfigMap whose one key holds a file (relative to
// examples/kubernetes) byte for byte.
type configFile struct{ configMap, key, file string }

func checkConfigMapsVerbatim(t *testing.T, ms []manifest, files []configFile) {
	t.Helper()
	for _, c := range files {
		want, err := os.ReadFile(filepath.Join(manifestDir, c.file))
		if err != nil {
			t.Fatal(err)
		}
		data := find[corev1.ConfigMap](t, ms, "ConfigMap", c.configMap).Data
		if len(data) != 1 || data[c.key] != string(want) {
			t.Errorf("ConfigMap %s: %s is not %s verbatim (keys %v)", c.configMap, c.key, c.file, slices.Sorted(maps.Keys(data)))
		}
	}
}

// checkSendToGateway checks that the Service reaches the gateway's OTLP
// ports and that the containers send OTLP to it.
func checkSendToGateway(t *testing.T, service corev1.Service, gateway appsv1.Deployment, senders map[string]corev1.Container) {
	t.Helper()
	ports := map[string]bool{}
	for _, p := range service.Spec.Ports {
		ports[fmt.Sprint(p.Port)] = true
		if p.TargetPort.StrVal == "" || !slices.ContainsFunc(container(t, gateway.Spec.Template.Spec, "otelcol").Ports, func(c corev1.ContainerPort) bool { return c.Name == p.TargetPort.StrVal }) {
			t.Errorf("Service port %s: target %v is no port of the gateway's", p.Name, p.TargetPort)
		}
	}
	if !ports["4317"] || !ports["4318"] {
		t.Errorf("Service %s: ports %v, want OTLP gRPC 4317 and HTTP 4318", service.Name, ports)
	}
	if sel := labels.SelectorFromSet(service.Spec.Selector); len(service.Spec.Selector) == 0 || !sel.Matches(labels.Set(gateway.Spec.Template.Labels)) {
		t.Errorf("Service %s: selector %v does not select the gateway's pods %v", service.Name, service.Spec.Selector, gateway.Spec.Template.Labels)
	}
	host := service.Name + "." + service.Namespace + ".svc:4317"
	for what, c := range senders {
		env := envOf(t, c, nil)
		if got := env["OTEL_EXPORTER_OTLP_ENDPOINT"] + env["OTLP_GATEWAY"]; strings.TrimPrefix(got, "http://") != host {
			t.Errorf("%s sends to %q, not %s", what, got, host)
		}
	}
}

// checkBinariesAccept runs the sidecar with each container's arguments
// and environment and --check-config, and otelcol-ebpfnet validate with
// each pod's otelcol container's arguments, environment and ConfigMap
// (the downward API's values stand in).
func checkBinariesAccept(t *testing.T, ms []manifest, sidecars map[string]corev1.Container, collectors map[string]corev1.PodSpec) {
	t.Helper()
	downward := map[string]string{"spec.nodeName": "node1", "status.podIP": "10.0.0.1", "metadata.name": "pod1", "metadata.namespace": "ns1"}
	for what, c := range sidecars {
		cmd := exec.Command(binary(t), append(slices.Clone(c.Args), "--check-config")...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		for k, v := range envOf(t, c, downward) {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: ebpfnet %s --check-config: %v\n%s", what, strings.Join(c.Args, " "), err, out)
		}
	}
	if len(collectors) == 0 {
		return
	}
	otelcol, _ := filepath.Abs("../../bin/otelcol-ebpfnet")
	if _, err := os.Stat(otelcol); err != nil {
		testenv.Missing(t, "bin/otelcol-ebpfnet is not built: run make otelcol, or make test")
	}
	for what, spec := range collectors {
		c := container(t, spec, "otelcol")
		args := slices.Clone(c.Args)
		dir := mountOf(t, c, "/etc/otelcol-ebpfnet")
		cm := volume(t, spec, dir).ConfigMap
		if cm == nil {
			t.Fatalf("%s: /etc/otelcol-ebpfnet is no ConfigMap", what)
		}
		tmp := t.TempDir()
		for k, v := range find[corev1.ConfigMap](t, ms, "ConfigMap", cm.Name).Data {
			if err := os.WriteFile(filepath.Join(tmp, k), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for i := range args {
			args[i] = strings.ReplaceAll(args[i], "/etc/otelcol-ebpfnet", tmp)
		}
		cmd := exec.Command(otelcol, append([]string{"validate"}, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		for k, v := range envOf(t, c, downward) {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: otelcol-ebpfnet validate %s: %v\n%s", what, strings.Join(c.Args, " "), err, out)
		}
	}
}
