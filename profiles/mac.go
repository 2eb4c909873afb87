package profiles

import (
	"fmt"
	"net"
	"strings"
)

// ParseMAC parses a 6-byte Ethernet MAC address written with colons
// (aa:bb:cc:dd:ee:ff), dashes (aa-bb-cc-dd-ee-ff) or as bare hex
// (aabbccddeeff), in any case.
func ParseMAC(s string) (net.HardwareAddr, error) {
	orig := s
	s = strings.TrimSpace(s)
	switch {
	case len(s) == 17 && (strings.Count(s, ":") == 5 || strings.Count(s, "-") == 5):
		sep := s[2]
		if sep != ':' && sep != '-' {
			return nil, fmt.Errorf("invalid MAC %q: want aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff or aabbccddeeff", orig)
		}
		var hex strings.Builder
		for i := 0; i < 17; i++ {
			if i%3 == 2 {
				if s[i] != sep {
					return nil, fmt.Errorf("invalid MAC %q: mixed or misplaced separators", orig)
				}
				continue
			}
			hex.WriteByte(s[i])
		}
		s = hex.String()
	case len(s) == 12:
	default:
		return nil, fmt.Errorf("invalid MAC %q: want aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff or aabbccddeeff", orig)
	}
	mac := make(net.HardwareAddr, 6)
	for i := 0; i < 6; i++ {
		hi, ok1 := unhex(s[2*i])
		lo, ok2 := unhex(s[2*i+1])
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("invalid MAC %q: %q is not a hex byte", orig, s[2*i:2*i+2])
		}
		mac[i] = hi<<4 | lo
	}
	return mac, nil
}

// NormalizeMAC returns the MAC in bootfleet's canonical form: lowercase with
// colons, e.g. "52:54:00:aa:00:01".
func NormalizeMAC(s string) (string, error) {
	mac, err := ParseMAC(s)
	if err != nil {
		return "", err
	}
	return mac.String(), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
