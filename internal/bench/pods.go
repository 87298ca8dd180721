//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Sizes: pods added one at a time, pods added at once, pods (and plain
// veth pairs) for the memory and collection tables.
const (
	podsSequential = 50
	podsBurst      = 50
	podsHeld       = podsSequential + podsBurst
)

// benchPods measures how soon a pod made through CNI is counted under its
// name, one at a time and 50 at once, beside how soon its veth is counted
// at all; the agent's memory per pod beside per plain veth pair; and one
// collection with 100 pods beside 100 plain pairs, pods on and off.
func benchPods() (string, error) {
	for _, plugin := range []string{"bridge", "host-local"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, plugin)); err != nil {
			return "", fmt.Errorf("the CNI %s plugin (Debian's containernetworking-plugins): %w", plugin, err)
		}
	}
	n, err := newCNINet()
	if err != nil {
		return "", err
	}
	defer func() {
		if err := n.close(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: pods: clean up:", err)
		}
	}()

	// Memory: an agent with no interface, and with plain veth pairs.
	empty, err := agentHeap(n.cacheDir, 0, 0, nil)
	if err != nil {
		return "", err
	}
	pp, err := newPlainPairs(podsHeld)
	if err != nil {
		return "", err
	}
	plain, err := agentHeap(n.cacheDir, podsHeld, 0, pp.send)
	pp.close()
	if err != nil {
		return "", err
	}

	// Latency: pods added while an agent runs.
	a, err := openAgent(n.cacheDir, true)
	if err != nil {
		return "", err
	}
	defer func() {
		if a != nil {
			a.close()
		}
	}()
	// A first pod, not timed: it makes the bridge, and warms up what the
	// first ADD and the first naming initialise once.
	warm := n.pods("warm", 1)
	if err := n.sandbox(warm[0]); err != nil {
		return "", err
	}
	if err := n.addWatched(a.d, warm); err != nil {
		return "", err
	}
	if err := n.removeAll(warm); err != nil {
		return "", err
	}
	if err := waitFor(a.d, 0, 0); err != nil {
		return "", err
	}
	// One pod at a time.
	seq := n.pods("one", podsSequential)
	for _, p := range seq {
		if err := n.sandbox(p); err != nil {
			return "", err
		}
		if err := n.addWatched(a.d, []*benchPod{p}); err != nil {
			return "", err
		}
	}
	// A burst: every sandbox made first, then every ADD at once.
	burst := n.pods("burst", podsBurst)
	for _, p := range burst {
		if err := n.sandbox(p); err != nil {
			return "", err
		}
	}
	load := loadAverage()
	before := threadTimes()
	t0 := time.Now()
	if err := n.addWatched(a.d, burst); err != nil {
		return "", err
	}
	bt := burstTimes{took: time.Since(t0), load: load}
	bt.ran, bt.waited = threadTimes().sub(before)
	held := append(slices.Clone(seq), burst...)
	if err := waitFor(a.d, podsHeld, podsHeld); err != nil {
		return "", err
	}
	// What the naming does once a result is written, step by step.
	steps, err := namingSteps(a.d, n, held)
	if err != nil {
		return "", err
	}
	a.close()
	a = nil

	// Memory: an agent opened on the pods.
	mem, err := agentHeap(n.cacheDir, podsHeld, podsHeld, func() error { return sendPods(held) })
	if err != nil {
		return "", err
	}

	// One collection: the pods beside as many plain pairs, on an agent
	// with pods on and one with pods off, both counting them at once.
	if pp, err = newPlainPairs(podsHeld); err != nil {
		return "", err
	}
	defer pp.close()
	var agents [2]*agent
	for i, pods := range []bool{true, false} {
		if agents[i], err = openAgent(n.cacheDir, pods); err != nil {
			return "", err
		}
		defer agents[i].close()
		named := 0
		if pods {
			named = podsHeld
		}
		if err := waitFor(agents[i].d, 2*podsHeld, named); err != nil {
			return "", err
		}
	}
	if err := sendPods(held); err != nil {
		return "", err
	}
	if err := pp.send(); err != nil {
		return "", err
	}
	costs, err := collectionCosts(agents[:])
	if err != nil {
		return "", err
	}

	var b strings.Builder
	writeLatency(&b, seq, burst, bt)
	b.WriteString(steps)
	writeMemory(&b, empty, mem, plain)
	writeCollection(&b, costs[0], costs[1])
	return b.String(), nil
}
