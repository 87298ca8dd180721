//go:build linux

package testenv

import "encoding/binary"

// Frame builders for crafted frames: the parser cases, the fuzz seeds and
// the benchmarks. Addresses are left zero; only the headers' lengths and
// protocol fields matter to the parser.

// Eth is an Ethernet header with the given VLAN tags (TPIDs, outermost
// first) before the EtherType.
func Eth(proto uint16, tags ...uint16) []byte {
	f := make([]byte, 12)
	for _, tpid := range tags {
		f = binary.BigEndian.AppendUint16(f, tpid)
		f = binary.BigEndian.AppendUint16(f, 42)
	}
	return binary.BigEndian.AppendUint16(f, proto)
}

// IPv4 is an IPv4 header of ihl 32-bit words carrying proto, and payload
// zero bytes.
func IPv4(proto byte, ihl int, payload int) []byte {
	h := make([]byte, ihl*4+payload)
	h[0], h[8], h[9] = 0x40|byte(ihl), 64, proto
	binary.BigEndian.PutUint16(h[2:], uint16(len(h)))
	return h
}

// IPv6 is an IPv6 header followed by the extension headers in chain (each
// given by its protocol number: 0, 43, 60 are 16 bytes, 44 is 8, 51 is 24),
// then proto's payload zero bytes.
func IPv6(proto byte, payload int, chain ...byte) []byte {
	h := make([]byte, 40)
	h[0], h[7] = 0x60, 64
	next := 6
	for _, ext := range chain {
		h[next] = ext
		var e []byte
		switch ext {
		case 44: // fragment: always 8 bytes
			e = make([]byte, 8)
		case 51: // AH: (len+2)*4 bytes
			e = make([]byte, 24)
			e[1] = 4
		default: // (len+1)*8 bytes
			e = make([]byte, 16)
			e[1] = 1
		}
		next = len(h)
		h = append(h, e...)
	}
	h[next] = proto
	h = append(h, make([]byte, payload)...)
	binary.BigEndian.PutUint16(h[4:], uint16(len(h)-40))
	return h
}

// Cat concatenates headers into a frame.
func Cat(parts ...[]byte) []byte {
	var f []byte
	for _, p := range parts {
		f = append(f, p...)
	}
	return f
}

// UDP4Packet is an IPv4 packet from src to dst carrying a UDP datagram of
// payload zero bytes to port, with a valid header checksum so that the
// kernel takes it in.
func UDP4Packet(src, dst []byte, port uint16, payload int) []byte {
	h := IPv4(17, 5, UDPLen+payload)
	copy(h[12:16], src)
	copy(h[16:20], dst)
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(h[20:], 9)
	binary.BigEndian.PutUint16(h[22:], port)
	binary.BigEndian.PutUint16(h[24:], uint16(UDPLen+payload))
	return h
}
