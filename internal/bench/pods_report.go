//go:build linux

package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func kb(bytes float64) string { return fmt.Sprintf("%.1f KB", bytes/1024) }

func writeLatency(b *strings.Builder, seq, burst []*benchPod, bt burstTimes) {
	b.WriteString("Pods made for real: libcni (the CNI project's library, as containerd calls it) runs CNI ADD with Debian's bridge plugin " +
		"(host-local IPAM, 203.0.113.0/24) into a fresh network namespace per pod, bind-mounted under a temp dir as a runtime mounts one under /run/netns, " +
		"and caches the result, kubelet arguments included, in the agent's cni_cache_dir; the agent (datapath.Open with pods on and include veth*) " +
		"runs in the same process while a loop polls Snapshot() without pause. Counted at all (the baseline: the attach path) is the first snapshot that lists the pod's host veth; " +
		"under its name, the first that lists it with the pod set; both from the moment AddNetworkList returned, a veth counted before that as 0. " +
		"The host veth's creation is when this process heard its first RTM_NEWLINK, as the agent hears it; in the burst this process's listener waits for a CPU too, " +
		"so from creation to counted is a lower bound there.\n\n")
	b.WriteString("| pods | ADD returned to counted at all: p50 / p99 / max | ADD returned to counted under its name: p50 / p99 / max | counted at all before ADD returned | veth created to counted at all: p50 / p99 / max | CNI ADD itself: p50 / p99 / max | target: named within 1 s, p99 |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | --- |\n")
	var verdicts []string
	for _, r := range []struct {
		what string
		ps   []*benchPod
	}{
		{fmt.Sprintf("one at a time (%d pods)", len(seq)), seq},
		{fmt.Sprintf("a burst of %d added at once", len(burst)), burst},
	} {
		var attached, named, fromCreated, add []time.Duration
		early := 0
		for _, p := range r.ps {
			if !p.seen.After(p.returned) {
				early++
			}
			attached = append(attached, max(0, p.seen.Sub(p.returned)))
			named = append(named, max(0, p.named.Sub(p.returned)))
			fromCreated = append(fromCreated, max(0, p.seen.Sub(p.created)))
			add = append(add, p.returned.Sub(p.start))
		}
		slices.Sort(named)
		p99 := named[min(len(named)-1, int(0.99*float64(len(named))))]
		verdict := "met"
		if p99 > time.Second {
			verdict = "NOT met"
		}
		verdicts = append(verdicts, fmt.Sprintf("%s %s (p99 %s)", r.what, verdict, dur(p99.Nanoseconds())))
		fmt.Fprintf(b, "| %s | %s | %s | %d of %d | %s | %s | %s |\n", r.what, percentiles(attached), percentiles(named), early, len(r.ps),
			percentiles(fromCreated), percentiles(add), verdict)
	}
	fmt.Fprintf(b, "\nThe burst ran %d ADDs at once, each running the bridge and host-local plugins; the last pod was named %s after they began. "+
		"Meanwhile this process's threads (the agent's and the poll loop) ran %s and waited %s runnable for a CPU (schedstat); the machine's one-minute load average before it: %s.\n",
		len(burst), dur(bt.took.Nanoseconds()), dur(bt.ran.Nanoseconds()), dur(bt.waited.Nanoseconds()), bt.load)
	fmt.Fprintf(b, "Target (issue 18): a pod whose CNI ADD has returned is counted under its name within a second: %s.\n\n", strings.Join(verdicts, "; "))
}

func writeMemory(b *strings.Builder, empty, pods, plain heaps) {
	fmt.Fprintf(b, "The agent's Go heap: live bytes (runtime.ReadMemStats HeapAlloc after runtime.GC) an agent added from before it was opened (pods on, the sidecar's callback registered on an SDK meter provider), "+
		"once every interface is listed and named (counted), and after one SDK collection with one frame of every class on every interface in both directions "+
		"(collected: 48 points an interface, 96 a pod's veth, its own view and the pod's); per interface, less the agent with none.\n\n")
	b.WriteString("| agent on | counted | per interface | collected | per interface |\n| --- | ---: | ---: | ---: | ---: |\n")
	per := func(v, zero int64, n int) string { return kb(float64(v-zero) / float64(n)) }
	fmt.Fprintf(b, "| no interface | %s | | %s | |\n", kb(float64(empty.counted)), kb(float64(empty.collected)))
	for _, r := range []struct {
		what string
		h    heaps
	}{
		{fmt.Sprintf("%d pods' host veths, named by their pods", pods.n), pods},
		{fmt.Sprintf("baseline: %d plain veth pairs", plain.n), plain},
	} {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", r.what, kb(float64(r.h.counted)), per(r.h.counted, empty.counted, r.h.n),
			kb(float64(r.h.collected)), per(r.h.collected, empty.collected, r.h.n))
	}
	fmt.Fprintf(b, "\nWhat naming adds per pod over a plain veth: %s counted, %s collected.\n\n",
		kb(float64(pods.counted-plain.counted)/float64(pods.n)), kb(float64(pods.collected-plain.collected)/float64(pods.n)))
}

func writeCollection(b *strings.Builder, on, off collection) {
	fmt.Fprintf(b, "One collection with %d pods' host veths beside %d plain veth pairs, every class on every interface in both directions, timed with testing.Benchmark as in \"sidecar: one collection\": "+
		"two agents count the same interfaces at once, one with pods on and one with pods off (pods.enabled false), timed in turn, best of %d rounds.\n\n", podsHeld, podsHeld, collectionRounds)
	b.WriteString("| setup | points: interfaces' view + pods' view | snapshot | snapshot + observe | SDK collection | allocs: snapshot + observe | allocs: SDK collection |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range []struct {
		what string
		c    collection
	}{
		{fmt.Sprintf("pods on: %d named, %d not", podsHeld, podsHeld), on},
		{"baseline: pods off", off},
	} {
		fmt.Fprintf(b, "| %s | %d + %d | %s | %s | %s | %d | %d |\n", r.what, r.c.ifacePoints, r.c.podPoints,
			dur(r.c.snap.NsPerOp()), dur(r.c.observe.NsPerOp()), dur(r.c.sdk.NsPerOp()), r.c.observe.AllocsPerOp(), r.c.sdk.AllocsPerOp())
	}
	ratio := func(x, y testing.BenchmarkResult) string {
		return fmt.Sprintf("%.2fx", float64(x.NsPerOp())/float64(y.NsPerOp()))
	}
	fmt.Fprintf(b, "| pods on / off | %.2fx | %s | %s | %s | | |\n",
		float64(on.ifacePoints+on.podPoints)/float64(off.ifacePoints+off.podPoints), ratio(on.snap, off.snap), ratio(on.observe, off.observe), ratio(on.sdk, off.sdk))
}
