package profiles

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrNoMatch means no group selects the machine. Errors returned by Match
// wrap it with the reason.
var ErrNoMatch = errors.New("no group matches")

// Match is the group a machine falls into and the profile it boots.
type Match struct {
	Group   *Group
	Profile *Profile
}

// Matches reports whether every selector key of the group matches the facts.
func (g *Group) Matches(f Facts) bool {
	for key, values := range g.Selector {
		fact, ok := f.value(key)
		if !ok || !slices.Contains(values, fact) {
			return false
		}
	}
	return true
}

func (f Facts) value(key string) (string, bool) {
	var v string
	switch key {
	case KeyMAC:
		v = f.MAC
	case KeyArch:
		v = f.Arch
	case KeyFirmware:
		v = f.Firmware
	case KeyUUID:
		v = strings.ToLower(f.UUID)
	case KeyHostname:
		v = f.Hostname
	default:
		v = f.Labels[key]
	}
	return v, v != ""
}

// Match returns the most specific group that selects the machine: the one
// with most selector keys, then the highest priority, then the first name.
func (s *Set) Match(f Facts) (Match, error) {
	withMAC, others := s.byMAC[f.MAC], s.others
	for len(withMAC) > 0 || len(others) > 0 {
		var i int
		if len(others) == 0 || (len(withMAC) > 0 && withMAC[0] < others[0]) {
			i, withMAC = withMAC[0], withMAC[1:]
		} else {
			i, others = others[0], others[1:]
		}
		if g := s.Groups[i]; g.Matches(f) {
			return Match{Group: g, Profile: s.Profiles[g.Profile]}, nil
		}
	}
	return Match{}, fmt.Errorf("%w mac=%s arch=%s firmware=%s: add a group whose selector matches, or a default group without selector", ErrNoMatch, f.MAC, orDash(f.Arch), orDash(f.Firmware))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// index builds the per-MAC look-up that Match uses; Groups must be sorted.
func (s *Set) index() {
	s.byMAC = map[string][]int{}
	s.others = nil
	for i, g := range s.Groups {
		macs, ok := g.Selector[KeyMAC]
		if !ok {
			s.others = append(s.others, i)
			continue
		}
		for _, mac := range macs {
			if l := s.byMAC[mac]; len(l) == 0 || l[len(l)-1] != i {
				s.byMAC[mac] = append(l, i)
			}
		}
	}
}

func sortGroups(gs []*Group) {
	slices.SortStableFunc(gs, func(a, b *Group) int {
		return cmp.Or(
			cmp.Compare(len(b.Selector), len(a.Selector)),
			cmp.Compare(b.Priority, a.Priority),
			cmp.Compare(a.Name, b.Name),
		)
	})
}

// selectorKey is a canonical text of a selector, equal for equal selectors.
func selectorKey(sel map[string][]string) string {
	var b strings.Builder
	for _, k := range sortedKeys(sel) {
		vals := slices.Clone(sel[k])
		slices.Sort(vals)
		fmt.Fprintf(&b, "%s=%s;", k, strings.Join(vals, ","))
	}
	return b.String()
}
