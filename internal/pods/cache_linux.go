package pods

import (
	"fmt"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// attachment is one cached CNI result: a pod's interface in a network, and
// the network namespace it is in.
type attachment struct {
	file    string // its cache file's name: network-containerID-ifname
	pod     Pod
	ok      bool     // it names a pod (the kubelet's arguments are there)
	netns   string   // the sandbox's network namespace, a path
	hostIfs []string // the host interfaces the result names, if any
	nsid    int      // the namespace's id here; -1 until known
}

// cache reads the results libcni cached, through libcni.
type cache struct {
	cni *libcni.CNIConfig
}

func newCache(dir string) cache {
	return cache{cni: libcni.NewCNIConfigWithCacheDir(nil, dir, nil)}
}

// fileName is the name libcni gives a result's cache file.
func fileName(a *libcni.NetworkAttachment) string {
	return fmt.Sprintf("%s-%s-%s", a.Network, a.ContainerID, a.IfName)
}

// read returns the attachments of a container, or of every container
// where containerID is "".
func (c cache) read(containerID string) ([]*attachment, error) {
	cached, err := c.cni.GetCachedAttachments(containerID)
	if err != nil {
		return nil, err
	}
	out := make([]*attachment, 0, len(cached))
	for _, a := range cached {
		// The loopback plugin's result (containerd caches it too): lo is
		// never a veth's peer.
		if a.IfName == "lo" {
			continue
		}
		pod, ok := fromArgs(a.CniArgs, a.IfName)
		hosts, sandbox := c.interfaces(a)
		netns := a.NetNS
		if netns == "" {
			netns = sandbox // libcni before 1.1 cached no netns
		}
		out = append(out, &attachment{file: fileName(a), pod: pod, ok: ok, netns: netns, hostIfs: hosts, nsid: -1})
	}
	return out, nil
}

// interfaces reads the cached result: the interfaces it names outside the
// pod's namespace (no sandbox: bridge names its bridge and the host veth,
// ptp the host veth; Calico's results name only the pod's eth0), and the
// sandbox of the pod's own interface (its network namespace).
func (c cache) interfaces(a *libcni.NetworkAttachment) (hosts []string, sandbox string) {
	rt := &libcni.RuntimeConf{ContainerID: a.ContainerID, IfName: a.IfName, NetNS: a.NetNS, Args: a.CniArgs}
	var (
		res types.Result
		err error
	)
	if list, lerr := libcni.NetworkConfFromBytes(a.Config); lerr == nil {
		res, err = c.cni.GetNetworkListCachedResult(list, rt)
	} else if conf, cerr := libcni.NetworkPluginConfFromBytes(a.Config); cerr == nil {
		res, err = c.cni.GetNetworkCachedResult(conf, rt)
	} else {
		return nil, ""
	}
	if err != nil || res == nil {
		return nil, ""
	}
	cur, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, ""
	}
	for _, i := range cur.Interfaces {
		switch {
		case i.Sandbox == "":
			hosts = append(hosts, i.Name)
		case i.Name == a.IfName:
			sandbox = i.Sandbox
		}
	}
	return hosts, sandbox
}
