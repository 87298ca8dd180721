//go:build linux

package testenv

import (
	"testing"
	"time"
)

// Patience is how long a test waits for something that should happen: far
// more than the slowest machine needs, so that a wait says nothing about
// speed. A wait ends as soon as its condition holds.
const Patience = time.Minute

// Eventually calls cond until it holds or limit has passed, and says
// whether it held.
func Eventually(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// WaitFor fails the test unless cond holds within Patience.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !Eventually(Patience, cond) {
		t.Fatalf("gave up waiting for %s after %v", what, Patience)
	}
}
