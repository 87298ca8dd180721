package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

const manifestDir = "../../examples/kubernetes"

// manifest is one document of a file under examples/kubernetes, decoded
// strictly into its k8s.io/api type.
type manifest struct {
	file string
	kind string
	name string
	obj  any
}

// kinds are the objects the examples may hold, by apiVersion and kind.
var kinds = map[string]func() any{
	"v1/Namespace":                           func() any { return new(corev1.Namespace) },
	"v1/ConfigMap":                           func() any { return new(corev1.ConfigMap) },
	"v1/ServiceAccount":                      func() any { return new(corev1.ServiceAccount) },
	"v1/Service":                             func() any { return new(corev1.Service) },
	"apps/v1/DaemonSet":                      func() any { return new(appsv1.DaemonSet) },
	"apps/v1/Deployment":                     func() any { return new(appsv1.Deployment) },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"policy/v1/PodDisruptionBudget":          func() any { return new(policyv1.PodDisruptionBudget) },
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// decodeManifests decodes every document of the files strictly: YAML
// duplicate keys, unknown fields and fields in the wrong case are errors
// (YAMLToJSONStrict, then sigs.k8s.io/json's case-sensitive
// UnmarshalStrict).
func decodeManifests(files []string) ([]manifest, error) {
	var out []manifest
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		ms, err := decodeDocuments(f, body)
		if err != nil {
			return nil, err
		}
		out = append(out, ms...)
	}
	return out, nil
}

// decodeDocuments decodes the documents of one file's body (named f in
// errors) as decodeManifests does.
func decodeDocuments(f string, body []byte) ([]manifest, error) {
	var out []manifest
	for i, doc := range docSeparator.Split(string(body), -1) {
		j, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("%s, document %d: %v", f, i+1, err)
		}
		if string(j) == "null" {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(j, &head); err != nil {
			return nil, fmt.Errorf("%s, document %d: %v", f, i+1, err)
		}
		mk, ok := kinds[head.APIVersion+"/"+head.Kind]
		if !ok {
			return nil, fmt.Errorf("%s, document %d: %s %s is not a kind this test knows", f, i+1, head.APIVersion, head.Kind)
		}
		obj := mk()
		strict, err := kjson.UnmarshalStrict(j, obj)
		if err == nil && len(strict) > 0 {
			err = strictErrors(strict)
		}
		if err != nil {
			return nil, fmt.Errorf("%s, %s %s: %v", f, head.Kind, head.Metadata.Name, err)
		}
		out = append(out, manifest{file: filepath.Base(f), kind: head.Kind, name: head.Metadata.Name, obj: obj})
	}
	return out, nil
}

type strictErrors []error

func (e strictErrors) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func manifestFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", manifestDir, err)
	}
	return files
}

// find returns the one object of that kind and name.
func find[T any](t *testing.T, ms []manifest, kind, name string) T {
	t.Helper()
	for _, m := range ms {
		if m.kind == kind && m.name == name {
			return *m.obj.(*T)
		}
	}
	t.Fatalf("no %s %s in %s", kind, name, fileList(ms))
	panic("unreachable")
}

// findAll returns every object of that kind.
func findAll[T any](ms []manifest, kind string) []T {
	var out []T
	for _, m := range ms {
		if m.kind == kind {
			out = append(out, *m.obj.(*T))
		}
	}
	return out
}

func fileList(ms []manifest) string {
	var files []string
	for _, m := range ms {
		if !slices.Contains(files, m.file) {
			files = append(files, m.file)
		}
	}
	return strings.Join(files, ", ")
}

// kubeconformSchemas writes strict per-kind JSON schemas, in kubeconform's
// file naming, from Kubernetes' OpenAPI definitions (swagger.json): each
// kind's definition with the definitions it refers to, every object with
// properties closed (additionalProperties: false), IntOrString and
// Quantity as the strings or numbers the API takes, as
// openapi2jsonschema does.
func kubeconformSchemas(t *testing.T, swagger string) string {
	t.Helper()
	body, err := os.ReadFile(swagger)
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(body, &spec); err != nil {
		t.Fatalf("%s: %v", swagger, err)
	}
	defs := spec.Definitions
	defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
	defs["io.k8s.apimachinery.pkg.api.resource.Quantity"] = map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
	var closeObjects func(v any)
	closeObjects = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["properties"]; ok {
				if _, ok := v["additionalProperties"]; !ok {
					v["additionalProperties"] = false
				}
			}
			for _, c := range v {
				closeObjects(c)
			}
		case []any:
			for _, c := range v {
				closeObjects(c)
			}
		}
	}
	var refs func(v any, into map[string]any)
	refs = func(v any, into map[string]any) {
		switch v := v.(type) {
		case map[string]any:
			if r, ok := v["$ref"].(string); ok {
				name := strings.TrimPrefix(r, "#/definitions/")
				if _, seen := into[name]; !seen {
					into[name] = defs[name]
					refs(defs[name], into)
				}
			}
			for _, c := range v {
				refs(c, into)
			}
		case []any:
			for _, c := range v {
				refs(c, into)
			}
		}
	}
	for _, d := range defs {
		closeObjects(d)
	}
	dir := t.TempDir()
	n := 0
	for name, d := range defs {
		gvks, _ := d["x-kubernetes-group-version-kind"].([]any)
		for _, g := range gvks {
			gvk := g.(map[string]any)
			group, _ := gvk["group"].(string)
			suffix := "-" + gvk["version"].(string)
			if group != "" {
				suffix = "-" + strings.Split(group, ".")[0] + suffix
			}
			closure := map[string]any{name: d}
			refs(d, closure)
			schema, err := json.Marshal(map[string]any{
				"$schema":     "http://json-schema.org/draft-04/schema#",
				"$ref":        "#/definitions/" + name,
				"definitions": closure,
			})
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, strings.ToLower(gvk["kind"].(string))+suffix+".json")
			if err := os.WriteFile(file, schema, 0o644); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	if n < 100 {
		t.Fatalf("%s: only %d kinds", swagger, n)
	}
	return dir
}

// kubeconform returns a function that runs bin/kubeconform in strict
// mode, against the strict per-kind schemas made from
// bin/kubernetes-openapi.json, on files; it skips t (fails it with
// EBPFNET_PRIVILEGED=require) when make kubernetes-tools has not made them.
func kubeconform(t *testing.T) func(files ...string) (string, error) {
	t.Helper()
	kubeconform, swagger := kubernetesTools()
	for _, f := range []string{kubeconform, swagger} {
		if _, err := os.Stat(f); err != nil {
			testenv.Missing(t, f+" is missing: run make kubernetes-tools, or make test")
		}
	}
	schemas := kubeconformSchemas(t, swagger)
	return func(files ...string) (string, error) {
		args := append([]string{"-strict", "-summary", "-schema-location", schemas + "/{{ .ResourceKind }}{{ .KindSuffix }}.json"}, files...)
		out, err := exec.Command(kubeconform, args...).CombinedOutput()
		return string(out), err
	}
}

// kubernetesTools are what make kubernetes-tools makes: kubeconform and
// Kubernetes' OpenAPI definitions.
func kubernetesTools() (kubeconform, swagger string) {
	kubeconform, _ = filepath.Abs("../../bin/kubeconform")
	swagger, _ = filepath.Abs("../../bin/kubernetes-openapi.json")
	return kubeconform, swagger
}

// kubernetesToolsMade tells whether make kubernetes-tools made them.
func kubernetesToolsMade() bool {
	kubeconform, swagger := kubernetesTools()
	_, err1 := os.Stat(kubeconform)
	_, err2 := os.Stat(swagger)
	return err1 == nil && err2 == nil
}

// checkKubeconform runs kubeconform on files, which hold n objects: every
// one must be valid.
func checkKubeconform(t *testing.T, run func(files ...string) (string, error), n int, files ...string) {
	t.Helper()
	out, err := run(files...)
	if err != nil {
		t.Fatalf("kubeconform: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("Valid: %d, Invalid: 0, Errors: 0, Skipped: 0", n); !strings.Contains(out, want) {
		t.Errorf("kubeconform: want %q in\n%s", want, out)
	}
}

// checkTyposFail checks that kubeconform and strict decoding refuse the
// file with a misspelt field and with a field in the wrong case.
func checkTyposFail(t *testing.T, run func(files ...string) (string, error), file string) {
	t.Helper()
	for _, typo := range [][2]string{{"hostNetwork: true", "hostNetwrok: true"}, {"maxSurge: 0", "MaxSurge: 0"}} {
		bad := filepath.Join(t.TempDir(), filepath.Base(file))
		body, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(body, []byte(typo[0])) {
			t.Fatalf("%s has no %q", file, typo[0])
		}
		if err := os.WriteFile(bad, bytes.Replace(body, []byte(typo[0]), []byte(typo[1]), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		field := strings.TrimSuffix(typo[1], ": true")
		field = strings.TrimSuffix(field, ": 0")
		if out, err := run(bad); err == nil || !strings.Contains(out, field) {
			t.Errorf("kubeconform took %q: %v\n%s", typo[1], err, out)
		}
		if _, err := decodeManifests([]string{bad}); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("strict decoding took %q: %v", typo[1], err)
		}
	}
}

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

// mountIn is container name's mount on path in spec, to change, or nil.
func mountIn(spec *corev1.PodSpec, name, path string) *corev1.VolumeMount {
	for i := range spec.Containers {
		if c := &spec.Containers[i]; c.Name == name {
			for j := range c.VolumeMounts {
				if c.VolumeMounts[j].MountPath == path {
					return &c.VolumeMounts[j]
				}
			}
		}
	}
	return nil
}

// volumeIn is spec's volume name, to change, or nil.
func volumeIn(spec *corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
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

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	panic("unreachable")
}

func mountOf(t *testing.T, c corev1.Container, path string) corev1.VolumeMount {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return m
		}
	}
	t.Fatalf("container %s mounts nothing on %s", c.Name, path)
	panic("unreachable")
}

func volume(t *testing.T, spec corev1.PodSpec, m corev1.VolumeMount) corev1.Volume {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.Name == m.Name {
			return v
		}
	}
	t.Fatalf("no volume %s", m.Name)
	panic("unreachable")
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// envOf is the container's environment as Kubernetes gives it: values
// from the downward API's fields as given (absent: the field's path), and
// $(NAME) replaced by the variables defined before it.
func envOf(t *testing.T, c corev1.Container, downward map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			out[e.Name] = envRef.ReplaceAllStringFunc(e.Value, func(ref string) string {
				if v, ok := out[ref[2:len(ref)-1]]; ok {
					return v
				}
				return ref
			})
		case e.ValueFrom.FieldRef != nil:
			v, ok := downward[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				v = e.ValueFrom.FieldRef.FieldPath
			}
			out[e.Name] = v
		default:
			t.Fatalf("container %s: %s comes from %+v, which this test cannot give", c.Name, e.Name, e.ValueFrom)
		}
	}
	return out
}
