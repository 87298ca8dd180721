package main

import (
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	"sigs.k8s.io/yaml"
)

const chartDir = "../../charts/ebpfnet"

// kubeCapabilities are Helm's default capabilities (what helm template
// assumes without a cluster), for the Kubernetes release whose API the
// k8s.io/api module in go.mod is (v0.37.2: v1.37.2), as the Helm CLI
// derives it from its client-go, and as bin/kubernetes-openapi.json is.
// (Test binaries carry no module versions, so go.mod says it.)
func kubeCapabilities(t *testing.T) *common.Capabilities {
	t.Helper()
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	v := regexp.MustCompile(`(?m)^\s*k8s\.io/api v0\.(\d+\.\d+)\s`).FindSubmatch(mod)
	if v == nil {
		t.Fatal("go.mod: no k8s.io/api v0.x.y")
	}
	kv, err := common.ParseKubeVersion("v1." + string(v[1]))
	if err != nil {
		t.Fatal(err)
	}
	caps := common.DefaultCapabilities.Copy()
	caps.KubeVersion = *kv
	return caps
}

// helmTemplate renders the chart as helm template does: the values over
// values.yaml, checked against values.schema.json, the release's name and
// namespace, the templates through Helm's engine. It returns the rendered
// files by template path, without the empty ones and NOTES.txt (which
// must render too).
func helmTemplate(t *testing.T, release, namespace string, values map[string]any) (map[string]string, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading %s: %v", chartDir, err)
	}
	vals, err := chartutil.ToRenderValuesWithSchemaValidation(ch, values,
		common.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}, kubeCapabilities(t), false)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for name, body := range files {
		if path.Base(name) == "NOTES.txt" {
			if strings.TrimSpace(body) == "" {
				t.Errorf("%s renders empty", name)
			}
			continue
		}
		if strings.TrimSpace(body) != "" {
			out[name] = body
		}
	}
	return out, nil
}

// parseValues reads values given as YAML, as helm --values does.
func parseValues(t *testing.T, s string) map[string]any {
	t.Helper()
	v := map[string]any{}
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("values %q: %v", s, err)
	}
	return v
}

// rendered is one rendering of the chart: its files written out for
// kubeconform and decoded strictly.
type rendered struct {
	files []string
	ms    []manifest
}

func renderChart(t *testing.T, release, namespace, values string) rendered {
	t.Helper()
	files, err := helmTemplate(t, release, namespace, parseValues(t, values))
	if err != nil {
		t.Fatalf("helm template with %q: %v", values, err)
	}
	dir := t.TempDir()
	var r rendered
	for _, name := range slices.Sorted(maps.Keys(files)) {
		f := filepath.Join(dir, path.Base(name))
		if err := os.WriteFile(f, []byte(files[name]), 0o644); err != nil {
			t.Fatal(err)
		}
		ms, err := decodeDocuments(f, []byte(files[name]))
		if err != nil {
			t.Fatalf("strict decoding of %s: %v", name, err)
		}
		r.files = append(r.files, f)
		r.ms = append(r.ms, ms...)
	}
	return r
}

// objects lists the rendering's objects as "Kind name".
func (r rendered) objects() []string {
	var out []string
	for _, m := range r.ms {
		out = append(out, m.kind+" "+m.name)
	}
	slices.Sort(out)
	return out
}
