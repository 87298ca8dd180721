package testenv

import (
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

// Every exact-count test relies on a new pair being silent: no MLD, ND,
// router solicitations or ARP of the kernel's own.
func TestNewPairIsSilent(t *testing.T) {
	Privileged(t)
	p := NewPair(t, "quiet0")
	before := LinkStats(t, p.Local)
	time.Sleep(1500 * time.Millisecond)
	if d := LinkStats(t, p.Local).Sub(before); d != (Stats{}) {
		t.Errorf("a new pair carried traffic nobody sent: %+v", d)
	}
}
