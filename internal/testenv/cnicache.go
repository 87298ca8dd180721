//go:build linux

package testenv

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// CNIPod makes p's local end the host veth of a pod as a CNI cache
// describes one, without a runtime: it writes into dir (a cni_cache_dir)
// the result a runtime's libcni would have cached for a sandbox whose
// network namespace is p's peer namespace, named by a path to it, with
// the kubelet's arguments. It returns the file, which the caller may
// remove to play the pod's deletion. Real pods through containerd and CRI
// are internal/testenv/cri's; this is for tests of what is done with a
// named pod (views, dashboards), and for kernels where no runtime runs.
func CNIPod(t testing.TB, dir string, p *Pair, namespace, name, uid string) string {
	t.Helper()
	container := fmt.Sprintf("%064x", p.LocalIndex)
	cached := map[string]any{
		"kind": "cniCacheV1", "containerId": container, "ifName": p.Peer, "networkName": "testenv",
		// []byte: base64, as libcni writes the network's configuration.
		"config":  []byte(`{"cniVersion": "1.0.0", "name": "testenv", "plugins": [{"type": "ptp"}]}`),
		"cniArgs": [][2]string{{"K8S_POD_NAMESPACE", namespace}, {"K8S_POD_NAME", name}, {"K8S_POD_UID", uid}},
		"result": map[string]any{"cniVersion": "1.0.0", "interfaces": []map[string]string{
			{"name": p.Local}, {"name": p.Peer, "sandbox": fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(p.PeerNS))}}},
	}
	b, err := json.Marshal(cached)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "results"), 0o700); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "results", "testenv-"+container+"-"+p.Peer)
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}
