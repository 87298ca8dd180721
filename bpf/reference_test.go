package bpf

import "encoding/binary"

// referenceClass is the classifier of ebpfnet.c written plainly in Go, from
// the contract rather than from the C: the oracle for the parser tests and
// the fuzz target.
func referenceClass(f []byte) Class {
	if len(f) < 14 {
		return ClassNonIP
	}
	proto, off := binary.BigEndian.Uint16(f[12:]), 14
	for tags := 0; tags < 2 && (proto == 0x8100 || proto == 0x88a8); tags++ {
		if len(f) < off+4 {
			return ClassNonIP
		}
		proto, off = binary.BigEndian.Uint16(f[off+2:]), off+4
	}
	switch proto {
	case 0x0800:
		return ClassIPv4Unknown + referenceIPv4(f, off)
	case 0x86dd:
		return ClassIPv6Unknown + referenceIPv6(f, off)
	}
	return ClassNonIP
}

// referenceClassIP classifies a frame of an interface without a link-layer
// header (tun, WireGuard, ipip): it starts with the IP header, whose
// version nibble says which.
func referenceClassIP(f []byte) Class {
	if len(f) < 1 {
		return ClassNonIP
	}
	switch f[0] >> 4 {
	case 4:
		return ClassIPv4Unknown + referenceIPv4(f, 0)
	case 6:
		return ClassIPv6Unknown + referenceIPv6(f, 0)
	}
	return ClassNonIP
}

// Offsets of the transports within an IP version's classes.
const (
	tUnknown Class = iota
	tTCP
	tUDP
	tICMP
	tOther
)

func referenceIPv4(f []byte, off int) Class {
	if len(f) < off+10 {
		return tUnknown
	}
	ihl := int(f[off] & 0xf)
	if f[off]>>4 != 4 || ihl < 5 || len(f) < off+ihl*4 {
		return tUnknown
	}
	return referenceTransport(f[off+9], 1)
}

func referenceIPv6(f []byte, off int) Class {
	if len(f) < off+40 || f[off]>>4 != 6 {
		return tUnknown
	}
	next := f[off+6]
	off += 40
	// The parser reads no header that starts beyond this offset.
	for range 8 {
		switch next {
		case 0, 43, 44, 51, 60: // hop-by-hop, routing, fragment, AH, destination options
		default:
			return referenceTransport(next, 58)
		}
		// The parser reads next header and length of every extension
		// header, and reads nothing that starts past offset 510.
		if off > 510 || off+2 > len(f) {
			return tUnknown
		}
		size := (int(f[off+1]) + 1) * 8
		switch next {
		case 44:
			size = 8
		case 51:
			size = (int(f[off+1]) + 2) * 4
		}
		next, off = f[off], off+size
		if off > len(f) {
			return tUnknown
		}
	}
	return referenceTransport(next, 58)
}

func referenceTransport(proto, icmp byte) Class {
	switch proto {
	case 6:
		return tTCP
	case 17:
		return tUDP
	case icmp:
		return tICMP
	}
	return tOther
}
