//go:build linux

package cri

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"
)

func cniConfig() string {
	return `{
  "cniVersion": "1.0.0",
  "name": "` + networkName + `",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "` + bridgeName + `",
      "isGateway": true,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "` + subnet + `", "gateway": "` + Gateway.String() + `"}]]
      }
    }
  ]
}
`
}

const (
	addrGenModeDefault = "/proc/sys/net/ipv6/conf/default/addr_gen_mode"
	// Turned on by the bridge plugin, for the gateway.
	ipForward = "/proc/sys/net/ipv4/ip_forward"
)

// quietBridge makes the pods' network silent, as testenv's veth pairs
// are, so that the only traffic on a pod's veth is what the test sends:
// while the harness runs, new interfaces in the test's network namespace
// (the host-side veths) get no IPv6 link-local address, hence send no DAD,
// MLD or router solicitation; and the bridge, made here for the bridge
// plugin to take, has no IPv6 and no multicast snooping (which would join
// the all-snoopers groups and report them). The pods themselves have IPv6
// off (QuietSysctls).
func (h *Harness) quietBridge(t testing.TB) {
	t.Helper()
	h.sysctls = map[string][]byte{}
	for _, path := range []string{addrGenModeDefault, ipForward} {
		v, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		h.sysctls[path] = v
	}
	if err := os.WriteFile(addrGenModeDefault, []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := netlink.LinkByName(bridgeName); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			t.Fatal(err)
		}
	}
	off := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName}, MulticastSnooping: &off}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatalf("bridge %s: %v", bridgeName, err)
	}
	if err := os.WriteFile(filepath.Join("/proc/sys/net/ipv6/conf", bridgeName, "disable_ipv6"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
}
