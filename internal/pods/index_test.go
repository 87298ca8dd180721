package pods

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// conflist is the network configuration a runtime hands libcni, as the
// cache keeps it (a bridge network here, as in the real pods' tests).
const conflist = `{"cniVersion": "1.0.0", "name": "%s", "plugins": [{"type": "bridge", "bridge": "cni0", "isGateway": true,
 "ipam": {"type": "host-local", "ranges": [[{"subnet": "203.0.113.0/24"}]]}}]}`

// result is what a fixture's cached result says.
type result struct {
	network, container, ifName, netns string
	args                              [][2]string
	hostIfs                           []string // interfaces without a sandbox
}

// write writes a cache file as libcni 1.x writes it (kind cniCacheV1, the
// config base64, the result in CNI 1.0.0's shape), like the ones containerd
// left in the real pods' tests.
func write(t testing.TB, dir string, r result) string {
	t.Helper()
	var ifaces []map[string]string
	for _, h := range r.hostIfs {
		ifaces = append(ifaces, map[string]string{"name": h, "mac": "52:9a:66:7c:e1:bd"})
	}
	ifaces = append(ifaces, map[string]string{"name": r.ifName, "mac": "6e:c9:7b:c2:d1:19", "sandbox": r.netns})
	body := map[string]any{
		"kind": "cniCacheV1", "containerId": r.container, "ifName": r.ifName, "networkName": r.network,
		"config":  base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf(conflist, r.network))),
		"cniArgs": r.args,
		"result": map[string]any{"cniVersion": "1.0.0", "interfaces": ifaces,
			"ips": []map[string]any{{"address": "203.0.113.2/24", "interface": len(ifaces) - 1}}},
	}
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("%s-%s-%s", r.network, r.container, r.ifName)
	if err := os.MkdirAll(filepath.Join(dir, "results"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results", name), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func k8sArgs(ns, name, uid, sandbox string) [][2]string {
	// In the order containerd writes them, which is not fixed.
	return [][2]string{{"K8S_POD_NAME", name}, {"K8S_POD_INFRA_CONTAINER_ID", sandbox}, {"K8S_POD_UID", uid}, {"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", ns}}
}

func containerOf(n int) string { return fmt.Sprintf("%064x", n) }

// testIndex is an Index of dir whose kernel is a fake: netns paths have
// the ids nsids says, and namespaces the interfaces peers says.
func testIndex(t testing.TB, dir string, nsids map[string]int, peers map[int]map[string]int) *Index {
	x := newIndex(dir, slog.New(slog.DiscardHandler))
	x.nsidOf = func(path string) (int, error) {
		if id, ok := nsids[path]; ok {
			return id, nil
		}
		return -1, fmt.Errorf("no namespace %s", path)
	}
	x.peerIndexes = func(nsid int) (map[string]int, error) { return peers[nsid], nil }
	return x
}

func TestMatching(t *testing.T) {
	type link struct {
		ifindex    int
		name       string
		nsid, peer int
	}
	for _, tc := range []struct {
		name    string
		results []result
		links   []link
		peers   map[int]map[string]int
		want    map[int]Pod // by ifindex
	}{
		{"bridge: the result names the veth", []result{{"kubenet", containerOf(1), "eth0", "/run/netns/cni-a", k8sArgs("shop", "cart-7d9", "3f5e-uid", containerOf(1)), []string{"cni0", "veth1a2b"}}},
			[]link{{11, "veth1a2b", 4, 2}},
			nil, map[int]Pod{11: {UID: "3f5e-uid", Name: "cart-7d9", Namespace: "shop", Interface: "eth0"}}},
		{"calico: only the pod's eth0 in the result", []result{{"k8s-pod-network", containerOf(2), "eth0", "/run/netns/cni-b", k8sArgs("db", "pg-0", "9a1c-uid", containerOf(2)), nil}},
			[]link{{12, "cali0123456789a", 5, 3}},
			nil, map[int]Pod{12: {UID: "9a1c-uid", Name: "pg-0", Namespace: "db", Interface: "eth0"}}},
		{"a result naming another veth is not taken", []result{{"kubenet", containerOf(3), "eth0", "/run/netns/cni-c", k8sArgs("a", "b", "c-uid", containerOf(3)), []string{"cni0", "vethOTHER"}}},
			[]link{{13, "veth9999", 6, 2}},
			nil, map[int]Pod{}},
		{"podman: no kubelet arguments, no pod", []result{{"podman", containerOf(4), "eth0", "/run/netns/netns-d", [][2]string{{"K8S_POD_NAME", "web"}}, []string{"cni-podman0", "veth44"}}},
			[]link{{14, "veth44", 7, 2}},
			nil, map[int]Pod{}},
		{"two networks in one pod: by the peer's index", []result{
			{"kubenet", containerOf(5), "eth0", "/run/netns/cni-e", k8sArgs("n", "multi", "m-uid", containerOf(5)), nil},
			{"storage", containerOf(5), "net1", "/run/netns/cni-e", k8sArgs("n", "multi", "m-uid", containerOf(5)), nil}},
			[]link{{15, "vetha", 8, 3}, {16, "vethb", 8, 2}},
			map[int]map[string]int{8: {"lo": 1, "eth0": 2, "net1": 3}},
			map[int]Pod{15: {UID: "m-uid", Name: "multi", Namespace: "n", Interface: "net1"}, 16: {UID: "m-uid", Name: "multi", Namespace: "n", Interface: "eth0"}}},
		{"an interface whose peer is elsewhere is nobody's", []result{{"kubenet", containerOf(6), "eth0", "/run/netns/cni-f", k8sArgs("x", "y", "z-uid", containerOf(6)), nil}},
			[]link{{17, "veth17", 9, 2}},
			nil, map[int]Pod{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			nsids := map[string]int{"/run/netns/cni-a": 4, "/run/netns/cni-b": 5, "/run/netns/cni-c": 6, "/run/netns/netns-d": 7, "/run/netns/cni-e": 8, "/run/netns/cni-f": 10}
			for _, r := range tc.results {
				write(t, dir, r)
			}
			// Both orders: the results read before the links, and after.
			for _, resultsFirst := range []bool{true, false} {
				x := testIndex(t, dir, nsids, tc.peers)
				if resultsFirst {
					x.rescan()
				}
				for _, l := range tc.links {
					x.SetLink(l.ifindex, l.name, l.nsid, l.peer)
				}
				if !resultsFirst {
					x.rescan()
				}
				for _, l := range tc.links {
					got, want := x.Pod(l.ifindex), tc.want[l.ifindex]
					if (got == nil) != (want == Pod{}) || got != nil && *got != want {
						t.Errorf("results first %v: ifindex %d: %+v, want %+v", resultsFirst, l.ifindex, got, want)
					}
				}
			}
		})
	}
}

// A pod deleted (its result removed, CNI DEL) is nobody's; a pod made
// again under the same name has a new UID, on a new veth.
func TestChurn(t *testing.T) {
	dir := t.TempDir()
	nsids := map[string]int{"/run/netns/cni-1": 1, "/run/netns/cni-2": 2}
	x := testIndex(t, dir, nsids, nil)
	first := write(t, dir, result{"kubenet", containerOf(1), "eth0", "/run/netns/cni-1", k8sArgs("ns", "web", "uid-1", containerOf(1)), nil})
	x.SetLink(21, "veth21", 1, 2)
	x.changed(first)
	if p := x.Pod(21); p == nil || p.UID != "uid-1" {
		t.Fatalf("pod %+v", p)
	}
	if err := os.Remove(filepath.Join(dir, "results", first)); err != nil {
		t.Fatal(err)
	}
	x.changed(first)
	x.ForgetLink(21)
	if p := x.Pod(21); p != nil {
		t.Errorf("a deleted pod is still named: %+v", p)
	}
	second := write(t, dir, result{"kubenet", containerOf(2), "eth0", "/run/netns/cni-2", k8sArgs("ns", "web", "uid-2", containerOf(2)), nil})
	x.changed(second)
	x.SetLink(22, "veth22", 2, 2)
	if p := x.Pod(22); p == nil || p.UID != "uid-2" || p.Name != "web" {
		t.Errorf("the pod made again: %+v", p)
	}
	if len(x.atts) != 1 || len(x.pods) != 1 {
		t.Errorf("the index keeps %d results and %d pods, want what is there now: 1 and 1", len(x.atts), len(x.pods))
	}
}

// Whatever a cached result holds, reading and matching it never panics,
// and a host veth is named only by a result that carries every kubelet
// argument and whose sandbox is the veth's peer namespace.
func FuzzMatching(f *testing.F) {
	dir := f.TempDir()
	for _, r := range []result{
		{"kubenet", containerOf(1), "eth0", "/run/netns/cni-a", k8sArgs("shop", "cart", "3f5e-uid", containerOf(1)), []string{"cni0", "veth1a2b"}},
		{"kubenet", containerOf(1), "eth0", "/run/netns/cni-a", k8sArgs("shop", "cart", "3f5e-uid", containerOf(1)), nil},
		{"podman", containerOf(1), "eth0", "/run/netns/cni-a", [][2]string{{"K8S_POD_NAME", "web"}}, nil},
	} {
		b, err := os.ReadFile(filepath.Join(dir, "results", write(f, dir, r)))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, 4)
		f.Add(b, 5)
	}
	f.Fuzz(func(t *testing.T, file []byte, nsid int) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "results"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "results", "kubenet-"+containerOf(1)+"-eth0"), file, 0o600); err != nil {
			t.Fatal(err)
		}
		x := testIndex(t, dir, map[string]int{"/run/netns/cni-a": 4}, map[int]map[string]int{4: {"lo": 1, "eth0": 2}})
		x.rescan()
		x.SetLink(11, "veth1a2b", nsid, 2)
		p := x.Pod(11)
		if p != nil && (nsid != 4 || p.UID == "" || p.Name == "" || p.Namespace == "") {
			t.Errorf("peer namespace %d named %+v from:\n%s", nsid, *p, file)
		}
	})
}
