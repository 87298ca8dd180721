package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
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
