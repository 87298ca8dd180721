//go:build linux

package otlptest

import (
	"slices"
	"strings"
	"testing"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

// Names of the counters, as Values keys them.
const (
	PacketsMetric = "system.network.packet.count"
	BytesMetric   = "system.network.io"
)

// Series is one expected pair of data points: a class's packets and bytes.
type Series struct {
	Direction, NetworkType, Transport string
	Packets, Bytes                    int64
}

// Keys returns the Values keys of s's packets and bytes on iface.
func (s Series) Keys(iface string) (packets, bytes string) {
	kv := []string{"network.interface.name=" + iface, "network.io.direction=" + s.Direction}
	if s.NetworkType != "" {
		kv = append(kv, "network.type="+s.NetworkType)
	}
	if s.Transport != "" {
		kv = append(kv, "network.transport="+s.Transport)
	}
	return Key(PacketsMetric, kv...), Key(BytesMetric, kv...)
}

// SendKnown sends traffic whose every frame the test accounts for over a
// fresh pair: UDP/IPv4 and 802.1ad+802.1Q-tagged UDP/IPv4 in, UDP/IPv6
// out, ICMP echo both ways. It returns the series it must produce.
func SendKnown(t testing.TB, p *testenv.Pair) []Series {
	const payload = 100
	udp4, udp6 := int64(testenv.UDPFrameLen(false, payload)), int64(testenv.UDPFrameLen(true, payload))
	p.SendUDP(t, false, true, 200, payload)
	p.SendRaw(t, true, testenv.VLANFrame(p.LocalMAC, p.PeerMAC, []uint16{0x88a8, 0x8100}, payload), 30)
	p.SendUDP(t, true, false, 100, payload)
	p.Ping(t, 20, payload)
	return []Series{
		{"receive", "ipv4", "udp", 230, 200*udp4 + 30*(udp4+2*testenv.VLANLen)},
		{"transmit", "ipv6", "udp", 100, 100 * udp6},
		{"receive", "ipv4", "icmp", 20, 20 * udp4},
		{"transmit", "ipv4", "icmp", 20, 20 * udp4},
	}
}

// Totals sums an interface's series of metric in a direction.
func Totals(v map[string]int64, metric, iface, direction string) int64 {
	var n int64
	for k, x := range v {
		if strings.HasPrefix(k, metric+"{") && strings.Contains(k, "network.interface.name="+iface+",") &&
			strings.Contains(k, "network.io.direction="+direction) {
			n += x
		}
	}
	return n
}

// Matches reports whether v holds exactly the expected series for iface,
// no others, and totals equal to the kernel's deltas k.
func Matches(v map[string]int64, iface string, want []Series, k testenv.Stats) bool {
	n := 0
	for _, s := range want {
		pk, bk := s.Keys(iface)
		if v[pk] != s.Packets || v[bk] != s.Bytes {
			return false
		}
		n++
	}
	for key := range v {
		if strings.HasPrefix(key, PacketsMetric+"{") && strings.Contains(key, "="+iface+",") {
			n--
		}
	}
	return n == 0 &&
		Totals(v, PacketsMetric, iface, "receive") == int64(k.RxPackets) &&
		Totals(v, BytesMetric, iface, "receive") == int64(k.RxBytes) &&
		Totals(v, PacketsMetric, iface, "transmit") == int64(k.TxPackets) &&
		Totals(v, BytesMetric, iface, "transmit") == int64(k.TxBytes)
}

// Merge is want as split_by by keeps it: the class attributes not in by
// dropped, and the series that then name the same bucket summed.
func Merge(want []Series, by []string) []Series {
	var out []Series
	for _, s := range want {
		if !slices.Contains(by, "network.type") {
			s.NetworkType = ""
		}
		if !slices.Contains(by, "network.transport") {
			s.Transport = ""
		}
		i := slices.IndexFunc(out, func(o Series) bool {
			return o.Direction == s.Direction && o.NetworkType == s.NetworkType && o.Transport == s.Transport
		})
		if i < 0 {
			out = append(out, s)
			continue
		}
		out[i].Packets += s.Packets
		out[i].Bytes += s.Bytes
	}
	return out
}
