package config

import (
	"fmt"
	"regexp/syntax"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ifNameMax is the longest interface name the kernel takes (IFNAMSIZ - 1).
const ifNameMax = 15

// neverMatches says why pattern p (valid) can never match an interface
// name, or "": the kernel's names are 1 to 15 bytes, and contain no /, no :
// and no white space (dev_valid_name). A pattern that can never match is
// a mistake: a typo, or a name from another system.
func neverMatches(p string) string {
	if isRegexp(p) {
		re, err := syntax.Parse(p[1:len(p)-1], syntax.Perl)
		if err != nil {
			return ""
		}
		re = re.Simplify()
		if n := minLen(re); n > ifNameMax {
			return fmt.Sprintf("it matches only names of %d bytes or more, and interface names are at most %d", n, ifNameMax)
		}
		if re.Op == syntax.OpLiteral {
			return badChars(string(re.Rune))
		}
		return ""
	}
	// A glob: * matches any run of characters, ? and [...] one, \x the
	// character x, anything else itself.
	n := 0
	var literal strings.Builder
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '*':
		case '?':
			n++
		case '[':
			n++
			i += strings.IndexByte(p[i:], ']')
		case '\\':
			if i+1 < len(p) {
				i++
			}
			fallthrough
		default:
			n++
			literal.WriteByte(p[i])
		}
	}
	if n > ifNameMax {
		return fmt.Sprintf("it matches only names of %d bytes or more, and interface names are at most %d", n, ifNameMax)
	}
	if p == "." || p == ".." {
		return "the kernel refuses that name"
	}
	return badChars(literal.String())
}

// badChars says which character of s no interface name can have, or "".
func badChars(s string) string {
	for _, r := range s {
		if r == '/' || r == ':' || unicode.IsSpace(r) {
			return fmt.Sprintf("interface names cannot contain %q", r)
		}
	}
	return ""
}

// minLen is the length in bytes of the shortest string re matches, or
// more than any name where it matches none.
func minLen(re *syntax.Regexp) int {
	const never = 1 << 20
	switch re.Op {
	case syntax.OpNoMatch:
		return never
	case syntax.OpLiteral:
		n := 0
		for _, r := range re.Rune {
			n += utf8.RuneLen(r)
		}
		return n
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return 1
	case syntax.OpCapture, syntax.OpPlus:
		return minLen(re.Sub[0])
	case syntax.OpRepeat:
		return min(re.Min*minLen(re.Sub[0]), never)
	case syntax.OpConcat:
		n := 0
		for _, sub := range re.Sub {
			n = min(n+minLen(sub), never)
		}
		return n
	case syntax.OpAlternate:
		n := never
		for _, sub := range re.Sub {
			n = min(n, minLen(sub))
		}
		return n
	}
	return 0 // empty matches, anchors, boundaries, star, quest
}

func isRegexp(p string) bool {
	return len(p) >= 2 && strings.HasPrefix(p, "/") && strings.HasSuffix(p, "/")
}
