package snapshot

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/ebpfnet/ebpfnet/bpf"
	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var capture = flag.Bool("capture", false, "write the RTM_NEWSTATS messages the kernel sends to testdata/fuzz/FuzzParseStats")

// ifStatsMsg is the kernel's struct if_stats_msg (include/uapi/linux/
// if_link.h), which golang.org/x/sys/unix does not define.
type ifStatsMsg struct {
	Family     uint8
	Pad1       uint8
	Pad2       uint16
	Ifindex    uint32
	FilterMask uint32
}

// linkStats64 is struct rtnl_link_stats64 as the kernel has known it since
// 2.6.35 (the 23 counters vishvananda/netlink's LinkStatistics64 names);
// newer kernels append counters after them.
type linkStats64 = netlink.LinkStatistics64

func encode(t testing.TB, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := binary.Write(&b, binary.NativeEndian, v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// attr is one netlink attribute, padded to NLA_ALIGNTO.
func attr(t testing.TB, typ uint16, payload []byte) []byte {
	t.Helper()
	b := encode(t, unix.NlAttr{Len: uint16(unix.NLA_HDRLEN + len(payload)), Type: typ})
	b = append(b, payload...)
	for len(b)%unix.NLA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// statsMessage is the body of an RTM_NEWSTATS message (what follows the
// nlmsghdr): struct if_stats_msg, then the attributes.
func statsMessage(t testing.TB, ifindex uint32, attrs ...[]byte) []byte {
	t.Helper()
	b := encode(t, ifStatsMsg{Family: unix.AF_UNSPEC, Ifindex: ifindex, FilterMask: 1 << (unix.IFLA_STATS_LINK_64 - 1)})
	for _, a := range attrs {
		b = append(b, a...)
	}
	return b
}

// distinct are statistics with every counter different, so that a counter
// read from the wrong offset shows.
func distinct() linkStats64 {
	var s linkStats64
	v := (*[unsafe.Sizeof(s) / 8]uint64)(unsafe.Pointer(&s))
	for i := range v {
		v[i] = uint64(1000*(i+1) + i)
	}
	return s
}

// kernelOf is what ebpfnet reads of statistics: errors and drops by
// direction, by their names in struct rtnl_link_stats64.
func kernelOf(s linkStats64) [bpf.NumDirections]KernelStats {
	return [bpf.NumDirections]KernelStats{
		bpf.Receive:  {Errors: s.RxErrors, Dropped: s.RxDropped},
		bpf.Transmit: {Errors: s.TxErrors, Dropped: s.TxDropped},
	}
}

// The parser against messages built from the kernel's structs, well
// formed and not.
func TestParseStats(t *testing.T) {
	s := distinct()
	full := encode(t, s)
	// 6.18's struct: two counters more (rx_nohandler, rx_otherhost_dropped).
	newer := append(append([]byte{}, full...), encode(t, [2]uint64{77, 78})...)
	// Through tx_dropped, the last counter ebpfnet reads: the least it takes.
	least := full[:unsafe.Offsetof(s.TxDropped)+8]
	xstats := attr(t, unix.IFLA_STATS_LINK_XSTATS|unix.NLA_F_NESTED, []byte{1, 2, 3, 4, 5}) // padded
	want := map[int][bpf.NumDirections]KernelStats{7: kernelOf(s)}
	none := map[int][bpf.NumDirections]KernelStats{}
	for _, c := range []struct {
		name string
		m    []byte
		want map[int][bpf.NumDirections]KernelStats
	}{
		{"as 6.18 sends it", statsMessage(t, 7, attr(t, unix.IFLA_STATS_LINK_64, newer)), want},
		{"the 23 counters of old kernels", statsMessage(t, 7, attr(t, unix.IFLA_STATS_LINK_64, full)), want},
		{"through tx_dropped only", statsMessage(t, 7, attr(t, unix.IFLA_STATS_LINK_64, least)), want},
		{"after another attribute, padded", statsMessage(t, 7, xstats, attr(t, unix.IFLA_STATS_LINK_64, newer)), want},
		{"before another attribute", statsMessage(t, 7, attr(t, unix.IFLA_STATS_LINK_64, newer), xstats), want},
		{"type flags ignored", statsMessage(t, 7, attr(t, unix.IFLA_STATS_LINK_64|unix.NLA_F_NET_BYTEORDER, newer)), want},
		{"the last attribute unpadded at the end", statsMessage(t, 7, attr(t, unix.IFLA_STATS_LINK_64, append(least, 9)))[:12+4+65], want},
		{"malformed after it", append(statsMessage(t, 7, attr(t, unix.IFLA_STATS_LINK_64, newer)), 0xff, 0xff, 1, 0), want},
		{"no attribute", statsMessage(t, 7), none},
		{"another attribute only", statsMessage(t, 7, xstats), none},
		{"header cut short", statsMessage(t, 7)[:11], none},
		{"nothing", nil, none},
		{"one byte short of tx_dropped", statsMessage(t, 7, attr(t, unix.IFLA_STATS_LINK_64, least[:len(least)-1])), none},
		{"attribute longer than the message", statsMessage(t, 7, attr(t, unix.IFLA_STATS_LINK_64, newer))[:12+100], none},
		{"attribute shorter than its header", statsMessage(t, 7, []byte{3, 0, 1, 0}, attr(t, unix.IFLA_STATS_LINK_64, newer)), none},
		{"attribute of length 0", statsMessage(t, 7, []byte{0, 0, 1, 0}, attr(t, unix.IFLA_STATS_LINK_64, newer)), none},
		{"another attribute malformed before it", statsMessage(t, 7, []byte{0xff, 0, 2, 0}, attr(t, unix.IFLA_STATS_LINK_64, newer)), none},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := map[int][bpf.NumDirections]KernelStats{}
			parseStats(c.m, got)
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("parsed %v, want %v", got, c.want)
			}
			if ifindex, k, ok := referenceStats(c.m); ok != (len(c.want) == 1) || ok && (ifindex != 7 || k != c.want[7]) {
				t.Errorf("the reference parser says %d %v %v, the table %v", ifindex, k, ok, c.want)
			}
		})
	}
	// Messages add to what is there.
	got := map[int][bpf.NumDirections]KernelStats{3: {}}
	parseStats(statsMessage(t, 7, attr(t, unix.IFLA_STATS_LINK_64, newer)), got)
	if len(got) != 2 || got[7] != kernelOf(s) {
		t.Errorf("a second interface's message: %v", got)
	}
}

// referenceStats reads an RTM_NEWSTATS body by netlink(7)'s rules, decoding
// IFLA_STATS_LINK_64 into vishvananda/netlink's struct: ok when the
// if_stats_msg is whole and an IFLA_STATS_LINK_64 attribute holding at
// least the counters through tx_dropped is reached through whole
// attributes (the last one, if there are several).
func referenceStats(m []byte) (ifindex int, k [bpf.NumDirections]KernelStats, ok bool) {
	var hdr ifStatsMsg
	r := bytes.NewReader(m)
	if binary.Read(r, binary.NativeEndian, &hdr) != nil {
		return 0, k, false
	}
	rest := m[len(m)-r.Len():]
	for len(rest) >= unix.NLA_HDRLEN {
		var a unix.NlAttr
		if binary.Read(bytes.NewReader(rest), binary.NativeEndian, &a) != nil || int(a.Len) < unix.NLA_HDRLEN || int(a.Len) > len(rest) {
			break
		}
		payload := rest[unix.NLA_HDRLEN:a.Len]
		var s linkStats64
		if a.Type&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER) == unix.IFLA_STATS_LINK_64 && uintptr(len(payload)) >= unsafe.Offsetof(s.TxDropped)+8 {
			padded := make([]byte, max(uintptr(len(payload)), unsafe.Sizeof(s)))
			copy(padded, payload)
			if err := binary.Read(bytes.NewReader(padded), binary.NativeEndian, &s); err != nil {
				panic(err)
			}
			k, ok = kernelOf(s), true
		}
		next := (int(a.Len) + unix.NLA_ALIGNTO - 1) / unix.NLA_ALIGNTO * unix.NLA_ALIGNTO
		rest = rest[min(next, len(rest)):]
	}
	return int(hdr.Ifindex), k, ok
}

// dumpStats asks the kernel for every interface's IFLA_STATS_LINK_64, with
// vishvananda/netlink's netlink client, and returns the RTM_NEWSTATS
// bodies.
func dumpStats(t testing.TB) [][]byte {
	t.Helper()
	req := nl.NewNetlinkRequest(unix.RTM_GETSTATS, unix.NLM_F_DUMP)
	req.AddRawData(encode(t, ifStatsMsg{FilterMask: 1 << (unix.IFLA_STATS_LINK_64 - 1)}))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWSTATS)
	if err != nil {
		t.Fatalf("RTM_GETSTATS dump: %v", err)
	}
	return msgs
}

// sysfsStats reads the interface's errors and drops where the kernel
// shows them in /sys/class/net/IF/statistics.
func sysfsStats(t testing.TB, name string) [bpf.NumDirections]KernelStats {
	t.Helper()
	read := func(counter string) uint64 {
		b, err := os.ReadFile(filepath.Join("/sys/class/net", name, "statistics", counter))
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	return [bpf.NumDirections]KernelStats{
		bpf.Receive:  {Errors: read("rx_errors"), Dropped: read("rx_dropped")},
		bpf.Transmit: {Errors: read("tx_errors"), Dropped: read("tx_dropped")},
	}
}

// What the kernel sends, parsed, is what it shows in sysfs, for every
// interface, one of which has dropped frames; and kernelStats, which reads
// it with a socket of its own, reads the same.
func TestParseStatsFromTheKernel(t *testing.T) {
	testenv.Privileged(t)
	p := testenv.NewPair(t, "kstats0")
	// veth drops (and counts as tx_dropped) a frame longer than its
	// peer's MTU.
	p.SetPeerMTU(t, 1000)
	const dropped = 9
	p.SendRawDropped(t, testenv.Cat(testenv.Eth(0x88b5), make([]byte, 1400)), dropped)

	msgs := dumpStats(t)
	parsed := map[int][bpf.NumDirections]KernelStats{}
	for _, m := range msgs {
		before := len(parsed)
		parseStats(m, parsed)
		if len(parsed) != before+1 {
			t.Errorf("a message of the kernel's gave no statistics: % x", m)
		}
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(ifaces) || len(parsed) != len(ifaces) {
		t.Errorf("%d messages, %d parsed, for %d interfaces", len(msgs), len(parsed), len(ifaces))
	}
	for _, i := range ifaces {
		if got, want := parsed[i.Index], sysfsStats(t, i.Name); got != want {
			t.Errorf("%s: parsed %+v, sysfs says %+v", i.Name, got, want)
		}
	}
	if got := parsed[p.LocalIndex][bpf.Transmit].Dropped; got != dropped {
		t.Errorf("%s: %d transmit drops parsed, the test made %d", p.Local, got, dropped)
	}

	ks, err := newKernelStats()
	if err != nil {
		t.Fatal(err)
	}
	defer ks.close()
	read := map[int][bpf.NumDirections]KernelStats{-1: {}} // cleared by read
	if err := ks.read(read); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(read) != fmt.Sprint(parsed) {
		t.Errorf("kernelStats read %v, the dump parsed %v", read, parsed)
	}

	if *capture {
		dir := filepath.Join("testdata", "fuzz", "FuzzParseStats")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			var hdr ifStatsMsg
			if err := binary.Read(bytes.NewReader(m), binary.NativeEndian, &hdr); err != nil {
				t.Fatal(err)
			}
			name := "lo"
			if int(hdr.Ifindex) == p.LocalIndex {
				name = "veth-with-drops"
			} else if int(hdr.Ifindex) != 1 {
				continue
			}
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", m)
			if err := os.WriteFile(filepath.Join(dir, "kernel-6.18-"+name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Any bytes: parseStats neither panics nor reads past the message, and
// gives an interface's statistics exactly when the reference parser finds
// them, adding nothing else. Seeds: the kernel's own messages
// (testdata/fuzz/FuzzParseStats, written by go test -run
// TestParseStatsFromTheKernel -capture), the table's, and this kernel's.
func FuzzParseStats(f *testing.F) {
	s := encode(f, distinct())
	for _, m := range [][]byte{
		statsMessage(f, 7, attr(f, unix.IFLA_STATS_LINK_64, s)),
		statsMessage(f, 7, attr(f, unix.IFLA_STATS_LINK_XSTATS|unix.NLA_F_NESTED, []byte{1, 2, 3, 4, 5}), attr(f, unix.IFLA_STATS_LINK_64, s[:64])),
		statsMessage(f, 7),
	} {
		f.Add(m)
	}
	// This kernel's messages, where it answers (testenv.Main's namespace
	// has lo).
	req := nl.NewNetlinkRequest(unix.RTM_GETSTATS, unix.NLM_F_DUMP)
	req.AddRawData(encode(f, ifStatsMsg{FilterMask: 1 << (unix.IFLA_STATS_LINK_64 - 1)}))
	if msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWSTATS); err == nil {
		for _, m := range msgs {
			f.Add(m)
		}
	}
	f.Fuzz(func(t *testing.T, m []byte) {
		// The message in a larger buffer whose tail, past its length,
		// holds a well-formed IFLA_STATS_LINK_64: a read past the end
		// would find it.
		tail := attr(t, unix.IFLA_STATS_LINK_64, s)
		buf := append(append(make([]byte, 0, len(m)+len(tail)), m...), tail...)
		got := map[int][bpf.NumDirections]KernelStats{-1: {{Errors: 1}}}
		parseStats(buf[:len(m)], got)
		ifindex, want, ok := referenceStats(m)
		if got[-1] != ([bpf.NumDirections]KernelStats{{Errors: 1}}) {
			t.Fatalf("an entry that was there changed: %v", got)
		}
		delete(got, -1)
		switch {
		case !ok && len(got) != 0:
			t.Fatalf("statistics %v from a message without a whole IFLA_STATS_LINK_64: % x", got, m)
		case ok && (len(got) != 1 || got[ifindex] != want):
			t.Fatalf("parsed %v, want interface %d's %+v: % x", got, ifindex, want, m)
		}
	})
}
