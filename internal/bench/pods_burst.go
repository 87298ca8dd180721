//go:build linux

package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// schedTimes are how long each of this process's threads ran, and waited
// for a CPU while runnable, from /proc/self/task/*/schedstat.
type schedTimes map[string][2]int64

func threadTimes() schedTimes {
	t := schedTimes{}
	ents, _ := os.ReadDir("/proc/self/task")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/self/task/" + e.Name() + "/schedstat")
		if err != nil {
			continue
		}
		var run, wait int64
		if _, err := fmt.Sscan(string(b), &run, &wait); err == nil {
			t[e.Name()] = [2]int64{run, wait}
		}
	}
	return t
}

// sub is what the threads ran and waited since before (threads that ended
// meanwhile are not counted).
func (t schedTimes) sub(before schedTimes) (ran, waited time.Duration) {
	for tid, v := range t {
		b := before[tid]
		ran += time.Duration(v[0] - b[0])
		waited += time.Duration(v[1] - b[1])
	}
	return ran, waited
}

// loadAverage is the machine's one-minute load average (/proc/loadavg).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

// burstTimes describe the burst as a whole.
type burstTimes struct {
	took, ran, waited time.Duration
	load              string
}
