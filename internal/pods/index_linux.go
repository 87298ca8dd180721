package pods

import (
	"log/slog"
	"slices"
	"sync"
)

// Index answers, for an attached interface, which pod it is the host end
// of. It follows the CNI cache (watch_linux.go) and the interfaces
// ifwatch hands it; a collection only reads its answers.
type Index struct {
	log   *slog.Logger
	cache cache

	// Seams for the tests: what the kernel says of namespaces.
	nsidOf      func(path string) (int, error)
	peerIndexes func(nsid int) (map[string]int, error)

	mu      sync.Mutex
	links   map[int]link           // attached interfaces with a peer namespace, by ifindex
	atts    map[string]*attachment // cached results, by cache file name
	pods    map[int]*Pod           // the answer, by ifindex
	refused map[string]bool        // files whose mismatch was logged
	watch   *watcher
}

// link is an attached interface whose peer is in another namespace.
type link struct {
	name string
	nsid int // IFLA_LINK_NETNSID
	peer int // IFLA_LINK: the peer's ifindex there
}

func newIndex(dir string, log *slog.Logger) *Index {
	return &Index{
		log: log, cache: newCache(dir), nsidOf: nsidOf, peerIndexes: peerIndexes,
		links: map[int]link{}, atts: map[string]*attachment{}, pods: map[int]*Pod{}, refused: map[string]bool{},
	}
}

// Pod returns the pod whose host end the interface is, or nil.
func (x *Index) Pod(ifindex int) *Pod {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.pods[ifindex]
}

// SetLink tells the index of an attached interface (again at every change
// netlink reports): nsid is its peer's namespace (IFLA_LINK_NETNSID; -1
// for an interface that has no peer elsewhere) and peer the peer's ifindex.
func (x *Index) SetLink(ifindex int, name string, nsid, peer int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	old, had := x.links[ifindex]
	if nsid < 0 {
		if had {
			delete(x.links, ifindex)
			x.resolve(old.nsid)
		}
		return
	}
	l := link{name: name, nsid: nsid, peer: peer}
	if had && old == l {
		return
	}
	x.links[ifindex] = l
	// A result read before its namespace had an id here may have one now.
	for _, a := range x.atts {
		if a.nsid < 0 {
			a.nsid, _ = x.nsidOf(a.netns)
		}
	}
	if had && old.nsid != nsid {
		x.resolve(old.nsid)
	}
	x.resolve(nsid)
}

// ForgetLink tells the index an interface is no longer attached.
func (x *Index) ForgetLink(ifindex int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if l, ok := x.links[ifindex]; ok {
		delete(x.links, ifindex)
		x.resolve(l.nsid)
	}
	delete(x.pods, ifindex)
}

// setAttachments replaces what the index knows of the cache files files
// (every file, where all): those in atts are there, the others gone.
func (x *Index) setAttachments(atts []*attachment, files []string, all bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	touched := map[int]bool{}
	for name, a := range x.atts {
		if all || slices.Contains(files, name) {
			touched[a.nsid] = true
			delete(x.atts, name)
		}
	}
	for _, a := range atts {
		a.nsid, _ = x.nsidOf(a.netns)
		x.atts[a.file] = a
		touched[a.nsid] = true
	}
	for nsid := range touched {
		x.resolve(nsid)
	}
}

// resolve pairs the attached interfaces whose peer is in namespace nsid
// with the pods' results in that namespace, exactly or not at all: one
// interface and one result pair; several pair by the peer's ifindex, which
// must be the interface the result names in the namespace; and a result
// that names its host interfaces must name the one it pairs with.
func (x *Index) resolve(nsid int) {
	if nsid < 0 {
		return
	}
	var ifindexes []int
	for i, l := range x.links {
		if l.nsid == nsid {
			ifindexes = append(ifindexes, i)
			delete(x.pods, i)
		}
	}
	var atts []*attachment
	for _, a := range x.atts {
		if a.nsid == nsid {
			atts = append(atts, a)
		}
	}
	if len(ifindexes) == 0 || len(atts) == 0 {
		return
	}
	var peers map[string]int // the namespace's interfaces, asked for once
	for _, i := range ifindexes {
		l := x.links[i]
		var match *attachment
		if len(ifindexes) == 1 && len(atts) == 1 {
			match = atts[0]
		} else {
			if peers == nil {
				var err error
				if peers, err = x.peerIndexes(nsid); err != nil {
					x.log.Debug("cannot list a pod namespace's interfaces", "nsid", nsid, "error", err)
					return
				}
			}
			for _, a := range atts {
				if index, ok := peers[a.pod.Interface]; ok && index == l.peer {
					match = a
				}
			}
		}
		switch {
		case match == nil:
		case len(match.hostIfs) > 0 && !slices.Contains(match.hostIfs, l.name):
			if !x.refused[match.file] {
				x.refused[match.file] = true
				x.log.Warn("not naming an interface by its pod: the CNI result names other host interfaces", "interface", l.name, "result", match.file, "names", match.hostIfs)
			}
		case !match.ok:
			// podman, plain CNI: no pod to name.
		default:
			p := match.pod
			x.pods[i] = &p
		}
	}
}
