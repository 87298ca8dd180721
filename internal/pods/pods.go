// Package pods names the host ends of pods' network interfaces by their
// pods, from what the node alone knows: the container runtime's CNI result
// cache, read with the CNI project's own libcni, and each host veth's peer
// network namespace, from netlink. No API server, no capability beyond
// CAP_BPF and CAP_NET_ADMIN.
//
// When a runtime (containerd, CRI-O) creates a pod sandbox, it calls the
// CNI plugins through libcni, which caches each result under
// <cache dir>/results: the pod's namespace, name and UID (the kubelet's
// K8S_POD_* arguments), the pod's interface (eth0) and the sandbox's
// network namespace. A host veth belongs to that pod when its peer is in
// that namespace (IFLA_LINK_NETNSID against the namespace's id here), and,
// where a namespace has several, when its peer is that interface. Nothing
// is guessed: an interface that does not match exactly stays unattributed.
package pods

// Pod is the pod whose network a host interface is the host end of.
type Pod struct {
	UID, Name, Namespace string
	// Interface is the pod's own interface (eth0), as the CNI result
	// names it.
	Interface string
}

// The CNI arguments the kubelet gives a runtime, which libcni caches.
const (
	argNamespace = "K8S_POD_NAMESPACE"
	argName      = "K8S_POD_NAME"
	argUID       = "K8S_POD_UID"
)

// fromArgs reads a pod from the CNI arguments of a cached result: all
// three of the kubelet's, or none (podman, plain CNI users).
func fromArgs(args [][2]string, ifName string) (Pod, bool) {
	p := Pod{Interface: ifName}
	for _, kv := range args {
		switch kv[0] {
		case argNamespace:
			p.Namespace = kv[1]
		case argName:
			p.Name = kv[1]
		case argUID:
			p.UID = kv[1]
		}
	}
	return p, p.UID != "" && p.Name != "" && p.Namespace != "" && ifName != ""
}
