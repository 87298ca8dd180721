package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

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
