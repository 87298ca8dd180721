package main

import (
	"bytes"
	"cmp"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// The chart: helm lint finds nothing to warn about, for the default
// values and every variant below; with the default values it renders
// exactly the objects of examples/kubernetes (the sidecar's DaemonSet, the
// seccomp profile, the gateway), and with mode collector the Collector
// agent's instead of the sidecar's; and every rendering passes the checks
// the plain manifests get (TestKubernetesManifests): kubeconform strict,
// strict decoding, the configurations verbatim, the two capabilities and
// nothing privileged, the pin path, the endpoint, the binaries accepting
// their arguments, environment and configuration.
func TestHelmChart(t *testing.T) {
	// kubeconform's schemas, made once (they take a while) if
	// make kubernetes-tools made what they come from; else each
	// kubeconform subtest skips.
	var kc func(files ...string) (string, error)
	if kubernetesToolsMade() {
		kc = kubeconform(t)
	}
	run := func(t *testing.T) func(files ...string) (string, error) {
		if kc == nil {
			return kubeconform(t)
		}
		return kc
	}

	t.Run("files are the examples", func(t *testing.T) {
		for file, example := range map[string]string{
			"files/seccomp.json": "../../examples/container/seccomp.json",
			"files/agent.yaml":   "../../examples/otelcol/agent.yaml",
			"files/gateway.yaml": "../../examples/otelcol/gateway.yaml",
		} {
			got, err := os.ReadFile(filepath.Join(chartDir, file))
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(example)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("charts/ebpfnet/%s is not %s byte for byte: copy it again", file, strings.TrimPrefix(example, "../../"))
			}
		}
	})

	// The default values render examples/kubernetes' objects, the same
	// once decoded: the DaemonSet of ebpfnet-daemonset.yaml, the
	// ConfigMap of seccomp-profile.yaml, everything in gateway.yaml.
	t.Run("default values are the examples", func(t *testing.T) {
		r := renderChart(t, "ebpfnet", "ebpfnet", "")
		checkSameObjects(t, r, "ebpfnet-daemonset.yaml", "seccomp-profile.yaml", "gateway.yaml")
	})
	t.Run("mode collector is otelcol-agent.yaml", func(t *testing.T) {
		r := renderChart(t, "ebpfnet", "ebpfnet", "mode: collector")
		checkSameObjects(t, r, "otelcol-agent.yaml", "seccomp-profile.yaml", "gateway.yaml")
	})
	// gateway.prometheus.enabled is what gateway.yaml's comments say to
	// do for the Prometheus endpoint: GATEWAY_EXPORTERS set to
	// [prometheus, otlp_http] and the two metrics ports uncommented.
	t.Run("gateway prometheus is the example's opt-in", func(t *testing.T) {
		body, err := os.ReadFile(filepath.Join(manifestDir, "gateway.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		on := string(body)
		for _, edit := range [][2]string{
			{`value: "[otlp_http]"`, `value: "[prometheus, otlp_http]"`},
			{"# - {name: metrics, containerPort: 8890,", "- {name: metrics, containerPort: 8890,"},
			{"# - {name: metrics, port: 8890,", "- {name: metrics, port: 8890,"},
		} {
			if n := strings.Count(on, edit[0]); n != 1 {
				t.Fatalf("examples/kubernetes/gateway.yaml has %q %d times, want once", edit[0], n)
			}
			on = strings.Replace(on, edit[0], edit[1], 1)
		}
		f := filepath.Join(t.TempDir(), "gateway.yaml")
		if err := os.WriteFile(f, []byte(on), 0o644); err != nil {
			t.Fatal(err)
		}
		r := renderChart(t, "ebpfnet", "ebpfnet", "gateway: {prometheus: {enabled: true}}")
		checkSameObjects(t, r, "ebpfnet-daemonset.yaml", "seccomp-profile.yaml", f)
	})

	type variant struct {
		name, release, namespace, values string
		// The directories mounted for pod attribution: nil, the
		// defaults; zero, none.
		pods  *podsDirs
		check func(t *testing.T, r rendered)
	}
	variants := []variant{
		{name: "default", check: func(t *testing.T, r rendered) {
			checkPinPath(t, find[appsv1.DaemonSet](t, r.ms, "DaemonSet", "ebpfnet"), "/sys/fs/bpf/ebpfnet")
			checkGatewayPrometheus(t, r, "ebpfnet-gateway", false)
		}},
		// The gateway's Prometheus endpoint, opt-in: the exporter in the
		// pipeline and its port on the pod and the Service.
		{name: "gateway prometheus", values: "gateway: {prometheus: {enabled: true}}",
			check: func(t *testing.T, r rendered) {
				checkGatewayPrometheus(t, r, "ebpfnet-gateway", true)
			}},
		{name: "collector gateway prometheus", release: "net", values: "mode: collector\ngateway: {prometheus: {enabled: true}}",
			check: func(t *testing.T, r rendered) {
				checkGatewayPrometheus(t, r, "net-ebpfnet-gateway", true)
			}},
		{name: "sidecar", values: "mode: sidecar\nattach: tcx\ninterfaces: {include: ['eth*', 'ens*', '/^veth[0-9a-f]+$/'], exclude: [lo, 'docker*']}\npinPath: /sys/fs/bpf/ebpfnet/node",
			check: func(t *testing.T, r rendered) {
				ds := find[appsv1.DaemonSet](t, r.ms, "DaemonSet", "ebpfnet")
				checkPinPath(t, ds, "/sys/fs/bpf/ebpfnet/node")
				checkArgs(t, container(t, ds.Spec.Template.Spec, "ebpfnet"), "--pin-path", "/sys/fs/bpf/ebpfnet/node", "--attach", "tcx",
					"--interfaces", "eth*,ens*,/^veth[0-9a-f]+$/", "--exclude", "lo,docker*")
			}},
		{name: "collector", values: "mode: collector\nattach: tc\ninterfaces: {include: ['eth*', '*'], exclude: [lo, 'docker*']}",
			check: func(t *testing.T, r rendered) {
				ds := find[appsv1.DaemonSet](t, r.ms, "DaemonSet", "otelcol-ebpfnet-agent")
				checkArgs(t, container(t, ds.Spec.Template.Spec, "otelcol"), "--config=/etc/otelcol-ebpfnet/agent.yaml",
					"--set=receivers::ebpfnet::attach=tc",
					`--set=receivers::ebpfnet::interfaces::include=["eth*","*"]`,
					`--set=receivers::ebpfnet::interfaces::exclude=["lo","docker*"]`)
			}},
		{name: "gateway off", values: "gateway: {enabled: false}\nexporter: {otlpEndpoint: 'https://otlp.example.com:4317'}",
			check: func(t *testing.T, r rendered) {
				env := envOf(t, container(t, find[appsv1.DaemonSet](t, r.ms, "DaemonSet", "ebpfnet").Spec.Template.Spec, "ebpfnet"), nil)
				if got := env["OTEL_EXPORTER_OTLP_ENDPOINT"]; got != "https://otlp.example.com:4317" {
					t.Errorf("the sidecar sends to %q", got)
				}
			}},
		{name: "collector gateway off", values: "mode: collector\ngateway: {enabled: false}\nexporter: {otlpEndpoint: 'otlp.example.com:4317'}",
			check: func(t *testing.T, r rendered) {
				env := envOf(t, container(t, find[appsv1.DaemonSet](t, r.ms, "DaemonSet", "otelcol-ebpfnet-agent").Spec.Template.Spec, "otelcol"), nil)
				if got := env["OTLP_GATEWAY"]; got != "otlp.example.com:4317" {
					t.Errorf("the collector sends to %q", got)
				}
			}},
		{name: "no pins", values: `pinPath: ""`,
			check: func(t *testing.T, r rendered) {
				spec := find[appsv1.DaemonSet](t, r.ms, "DaemonSet", "ebpfnet").Spec.Template.Spec
				c := container(t, spec, "ebpfnet")
				if len(c.Args) != 0 || slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "bpffs" || m.MountPath == "/sys/fs/bpf" }) ||
					slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == "bpffs" }) {
					t.Errorf("no pin path, yet args %q, mounts %+v, volumes %+v", c.Args, c.VolumeMounts, spec.Volumes)
				}
			}},
		{name: "no pins, pods off", values: "pinPath: \"\"\npods: {enabled: false}", pods: &podsDirs{},
			check: func(t *testing.T, r rendered) {
				spec := find[appsv1.DaemonSet](t, r.ms, "DaemonSet", "ebpfnet").Spec.Template.Spec
				if c := container(t, spec, "ebpfnet"); len(c.Args) != 0 || c.VolumeMounts != nil {
					t.Errorf("no pin path and no pods, yet args %q, mounts %+v", c.Args, c.VolumeMounts)
				}
			}},
		// The sidecar has no flag for pods: without the mounts its image
		// has no CNI cache, and its default (on where the directory
		// exists) is off. Its arguments stay as they were.
		{name: "pods off", values: "pods: {enabled: false}", pods: &podsDirs{},
			check: func(t *testing.T, r rendered) {
				ds := find[appsv1.DaemonSet](t, r.ms, "DaemonSet", "ebpfnet")
				checkArgs(t, container(t, ds.Spec.Template.Spec, "ebpfnet"), "--pin-path", "/sys/fs/bpf/ebpfnet")
				checkPinPath(t, ds, "/sys/fs/bpf/ebpfnet")
			}},
		{name: "collector pods off", values: "mode: collector\npods: {enabled: false}", pods: &podsDirs{},
			check: func(t *testing.T, r rendered) {
				ds := find[appsv1.DaemonSet](t, r.ms, "DaemonSet", "otelcol-ebpfnet-agent")
				checkArgs(t, container(t, ds.Spec.Template.Spec, "otelcol"), "--config=/etc/otelcol-ebpfnet/agent.yaml",
					"--set=receivers::ebpfnet::pods::enabled=false")
			}},
		{name: "pods elsewhere", values: "pods: {cniCacheDir: /data/cni, netnsDir: /run/containerd/io.containerd.grpc.v1.cri/netns}",
			pods: &podsDirs{cniCache: "/data/cni", netns: "/run/containerd/io.containerd.grpc.v1.cri/netns"}},
		{name: "collector pods elsewhere", values: "mode: collector\npods: {cniCacheDir: /data/cni, netnsDir: /run/containerd/io.containerd.grpc.v1.cri/netns}",
			pods: &podsDirs{cniCache: "/data/cni", netns: "/run/containerd/io.containerd.grpc.v1.cri/netns"},
			check: func(t *testing.T, r rendered) {
				ds := find[appsv1.DaemonSet](t, r.ms, "DaemonSet", "otelcol-ebpfnet-agent")
				checkArgs(t, container(t, ds.Spec.Template.Spec, "otelcol"), "--config=/etc/otelcol-ebpfnet/agent.yaml")
			}},
		{name: "attach tc", values: "attach: tc",
			check: func(t *testing.T, r rendered) {
				ds := find[appsv1.DaemonSet](t, r.ms, "DaemonSet", "ebpfnet")
				checkArgs(t, container(t, ds.Spec.Template.Spec, "ebpfnet"), "--pin-path", "/sys/fs/bpf/ebpfnet", "--attach", "tc")
			}},
		{name: "custom tolerations", values: "tolerations: [{key: dedicated, operator: Equal, value: net, effect: NoSchedule}]\nnodeSelector: {kubernetes.io/os: linux}\npriorityClassName: system-node-critical",
			check: func(t *testing.T, r rendered) {
				spec := find[appsv1.DaemonSet](t, r.ms, "DaemonSet", "ebpfnet").Spec.Template.Spec
				want := []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "net", Effect: corev1.TaintEffectNoSchedule}}
				if !reflect.DeepEqual(spec.Tolerations, want) || spec.NodeSelector["kubernetes.io/os"] != "linux" || spec.PriorityClassName != "system-node-critical" {
					t.Errorf("tolerations %+v, nodeSelector %v, priorityClassName %q", spec.Tolerations, spec.NodeSelector, spec.PriorityClassName)
				}
			}},
		{name: "no tolerations", values: "tolerations: []",
			check: func(t *testing.T, r rendered) {
				if spec := find[appsv1.DaemonSet](t, r.ms, "DaemonSet", "ebpfnet").Spec.Template.Spec; spec.Tolerations != nil {
					t.Errorf("tolerations %+v", spec.Tolerations)
				}
			}},
		{name: "otlp only", values: "exporter: {metricsExporter: [otlp]}",
			check: func(t *testing.T, r rendered) {
				c := container(t, find[appsv1.DaemonSet](t, r.ms, "DaemonSet", "ebpfnet").Spec.Template.Spec, "ebpfnet")
				env := envOf(t, c, nil)
				if env["OTEL_METRICS_EXPORTER"] != "otlp" || env["OTEL_EXPORTER_PROMETHEUS_PORT"] != "" || c.LivenessProbe != nil || len(c.Ports) != 0 {
					t.Errorf("without prometheus: env %v, probe %+v, ports %+v", env, c.LivenessProbe, c.Ports)
				}
			}},
		{name: "prometheus only, gateway off", values: "exporter: {metricsExporter: [prometheus]}\ngateway: {enabled: false}\nsidecar: {prometheusPort: 9100}",
			check: func(t *testing.T, r rendered) {
				c := container(t, find[appsv1.DaemonSet](t, r.ms, "DaemonSet", "ebpfnet").Spec.Template.Spec, "ebpfnet")
				env := envOf(t, c, nil)
				if env["OTEL_EXPORTER_OTLP_ENDPOINT"] != "" || env["OTEL_EXPORTER_PROMETHEUS_PORT"] != "9100" || len(c.Ports) != 1 || c.Ports[0].ContainerPort != 9100 {
					t.Errorf("prometheus on 9100 alone: env %v, ports %+v", env, c.Ports)
				}
			}},
		{name: "another release", release: "net", namespace: "monitoring",
			values: "sidecar: {image: {repository: ghcr.io/example/ebpfnet, tag: '0.1.0', pullPolicy: IfNotPresent}, extraEnv: [{name: GOGC, value: '100'}, {name: OTEL_SERVICE_NAME, value: ebpfnet-$(NODE_NAME)}], resources: {requests: {cpu: 50m, memory: 96Mi}, limits: {memory: 192Mi}}}\n" +
				"gateway: {image: {repository: ghcr.io/example/otelcol-ebpfnet, tag: '0.1.0'}, backendOtlpEndpoint: 'http://prometheus.monitoring.svc:9090/api/v1/otlp', autoscaling: {minReplicas: 3, maxReplicas: 5, targetCPUUtilizationPercentage: 60}, podDisruptionBudget: {minAvailable: 2}}",
			check: func(t *testing.T, r rendered) {
				if got, want := r.objects(), []string{"ConfigMap net-ebpfnet-gateway", "ConfigMap net-ebpfnet-seccomp", "DaemonSet net-ebpfnet",
					"Deployment net-ebpfnet-gateway", "HorizontalPodAutoscaler net-ebpfnet-gateway", "PodDisruptionBudget net-ebpfnet-gateway",
					"Service net-ebpfnet-gateway", "ServiceAccount net-ebpfnet", "ServiceAccount net-ebpfnet-gateway"}; !slices.Equal(got, want) {
					t.Errorf("objects %q, want %q", got, want)
				}
				for _, m := range r.ms {
					if ns := reflect.ValueOf(m.obj).Elem().FieldByName("Namespace").String(); ns != "monitoring" {
						t.Errorf("%s %s in namespace %q", m.kind, m.name, ns)
					}
				}
				c := container(t, find[appsv1.DaemonSet](t, r.ms, "DaemonSet", "net-ebpfnet").Spec.Template.Spec, "ebpfnet")
				env := envOf(t, c, map[string]string{"spec.nodeName": "node1"})
				if c.Image != "ghcr.io/example/ebpfnet:0.1.0" || c.ImagePullPolicy != corev1.PullIfNotPresent || env["GOGC"] != "100" ||
					env["OTEL_SERVICE_NAME"] != "ebpfnet-node1" || c.Resources.Limits.Memory().String() != "192Mi" {
					t.Errorf("sidecar image %s %s, env %v, resources %+v", c.Image, c.ImagePullPolicy, env, c.Resources)
				}
				if c.Env[len(c.Env)-1].Name != "OTEL_SERVICE_NAME" {
					t.Errorf("extraEnv is not after the chart's variables: %+v", c.Env)
				}
			}},
	}
	for _, v := range variants {
		t.Run("renders "+v.name, func(t *testing.T) {
			release, namespace := cmp.Or(v.release, "ebpfnet"), cmp.Or(v.namespace, "ebpfnet")
			r := renderChart(t, release, namespace, v.values)
			t.Logf("%s", strings.Join(r.objects(), ", "))

			// helm lint with the same values: no error, no warning.
			l := lint.RunAll(chartDir, parseValues(t, v.values), namespace, lint.WithKubeVersion(&kubeCapabilities(t).KubeVersion))
			for _, m := range l.Messages {
				if m.Severity > support.InfoSev {
					t.Errorf("helm lint: %s", m)
				} else {
					t.Logf("helm lint: %s", m)
				}
			}

			t.Run("kubeconform", func(t *testing.T) { checkKubeconform(t, run(t), len(r.ms), r.files...) })
			pods := defaultPodsDirs
			if v.pods != nil {
				pods = *v.pods
			}
			checkRendered(t, r, pods)
			if v.check != nil {
				v.check(t, r)
			}
		})
	}

	// The schema and the templates refuse what cannot work: values.schema.json
	// (helm lint too) what is misspelt or out of range, the templates (with
	// fail, which helm lint only logs) an agent without a gateway or an
	// endpoint.
	t.Run("refuses", func(t *testing.T) {
		for values, want := range map[string]string{
			"mode: daemonset":                         "mode",
			"attach: bpf":                             "attach",
			"tolerationz: []":                         "tolerationz",
			"sidecar: {imag: {}}":                     "imag",
			"pinPath: /var/run/ebpfnet":               "pinPath",
			"pinPath: /sys/fs/bpf":                    "pinPath",
			"exporter: {metricsExporter: [x]}":        "metricsExporter",
			"pods: {enabld: false}":                   "enabld",
			"pods: {enabled: 'no'}":                   "enabled",
			"pods: {netnsDir: run/netns}":             "netnsDir",
			"pods: {netnsDir: /run/netns/}":           "netnsDir",
			"pods: {cniCacheDir: /var/../etc}":        "cniCacheDir",
			"pods: {cniCacheDir: ''}":                 "cniCacheDir",
			"gateway: {prometheus: {enabld: true}}":   "enabld",
			"gateway: {prometheus: {enabled: 'yes'}}": "enabled",
		} {
			if _, err := helmTemplate(t, "ebpfnet", "ebpfnet", parseValues(t, values)); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("values %q: %v; want an error about %s", values, err, want)
			}
			l := lint.RunAll(chartDir, parseValues(t, values), "ebpfnet", lint.WithKubeVersion(&kubeCapabilities(t).KubeVersion))
			if !slices.ContainsFunc(l.Messages, func(m support.Message) bool {
				return m.Severity == support.ErrorSev && strings.Contains(m.Err.Error(), want)
			}) {
				t.Errorf("helm lint took values %q: %v", values, l.Messages)
			}
		}
		for _, values := range []string{"gateway: {enabled: false}", "mode: collector\ngateway: {enabled: false}"} {
			if _, err := helmTemplate(t, "ebpfnet", "ebpfnet", parseValues(t, values)); err == nil || !strings.Contains(err.Error(), "set exporter.otlpEndpoint") {
				t.Errorf("values %q: %v; want an error asking for exporter.otlpEndpoint", values, err)
			}
		}
	})

	// The strict checks bite on the chart's output too.
	t.Run("typos fail", func(t *testing.T) {
		r := renderChart(t, "ebpfnet", "ebpfnet", "")
		i := slices.IndexFunc(r.files, func(f string) bool { return filepath.Base(f) == "sidecar.yaml" })
		if i < 0 {
			t.Fatalf("no sidecar.yaml in %q", r.files)
		}
		checkTyposFail(t, run(t), r.files[i])
	})
}
