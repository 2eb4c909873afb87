package profiles

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// decoder turns one YAML file into values, checking every key and type
// itself so that all problems of a file are reported, each at its position.
type decoder struct {
	path string
	c    *errorCollector
}

func (d *decoder) errAt(n ast.Node, format string, args ...any) {
	line, col := NodePos(n)
	d.c.add(d.path, line, col, format, args...)
}

// parseMapping parses the file and returns its top-level mapping, or nil
// after recording why there is none.
func (d *decoder) parseMapping(data []byte) []*ast.MappingValueNode {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		d.yamlErr(err)
		return nil
	}
	var docs []*ast.DocumentNode
	for _, doc := range f.Docs {
		if doc != nil && doc.Body != nil {
			docs = append(docs, doc)
		}
	}
	if len(docs) == 0 {
		d.c.add(d.path, 1, 1, "file is empty")
		return nil
	}
	if len(docs) > 1 {
		d.errAt(docs[1].Body, "one document per file; this file has %d", len(docs))
		return nil
	}
	values, ok := MappingValues(docs[0].Body)
	if !ok {
		d.errAt(docs[0].Body, "want a mapping of keys to values, got %s", NodeKind(docs[0].Body))
		return nil
	}
	return values
}

func (d *decoder) yamlErr(err error) {
	d.c.errs = append(d.c.errs, YAMLError(d.path, err))
}

// fields walks a mapping, calls set for every known key, and reports
// unknown and duplicate keys.
func (d *decoder) fields(values []*ast.MappingValueNode, what string, known []string, set func(key string, v ast.Node, kn ast.Node)) {
	seen := map[string]ast.Node{}
	for _, mv := range values {
		k := KeyName(mv)
		if prev, dup := seen[k]; dup {
			l, c := NodePos(prev)
			d.errAt(mv.Key, "duplicate key %q (first at line %d, column %d)", k, l, c)
			continue
		}
		seen[k] = mv.Key
		if !contains(known, k) {
			d.errAt(mv.Key, "unknown key %q in %s (known keys: %s)", k, what, strings.Join(known, ", "))
			continue
		}
		set(k, mv.Value, mv.Key)
	}
}

func (d *decoder) str(n ast.Node, field string) (string, bool) {
	switch v := Unwrap(n).(type) {
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		return v.Value.Value, true
	}
	d.errAt(n, "%s: want a string, got %s", field, NodeKind(n))
	return "", false
}

// strings decodes a list of strings; with single set, a lone string is
// accepted as a list of one.
func (d *decoder) strs(n ast.Node, field string, single bool) ([]string, bool) {
	seq, ok := Unwrap(n).(*ast.SequenceNode)
	if !ok {
		if single {
			if s, ok := d.str(n, field); ok {
				return []string{s}, true
			}
			return nil, false
		}
		d.errAt(n, "%s: want a list of strings, got %s", field, NodeKind(n))
		return nil, false
	}
	out := make([]string, 0, len(seq.Values))
	good := true
	for i, item := range seq.Values {
		s, ok := d.str(item, fmt.Sprintf("%s[%d]", field, i))
		good = good && ok
		out = append(out, s)
	}
	return out, good
}

func (d *decoder) int(n ast.Node, field string) (int, bool) {
	if v, ok := Unwrap(n).(*ast.IntegerNode); ok {
		switch x := v.Value.(type) {
		case int64:
			if x >= -1<<31 && x < 1<<31 {
				return int(x), true
			}
		case uint64:
			if x < 1<<31 {
				return int(x), true
			}
		}
		d.errAt(n, "%s: %s is out of range", field, v.Token.Value)
		return 0, false
	}
	d.errAt(n, "%s: want an integer, got %s", field, NodeKind(n))
	return 0, false
}

func (d *decoder) anyMap(n ast.Node, field string) (map[string]any, bool) {
	if Unwrap(n).Type() == ast.NullType {
		return map[string]any{}, true
	}
	if _, ok := MappingValues(n); !ok {
		d.errAt(n, "%s: want a mapping, got %s", field, NodeKind(n))
		return nil, false
	}
	var m map[string]any
	if err := yaml.NodeToValue(n, &m); err != nil {
		d.yamlErr(err)
		return nil, false
	}
	return m, true
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func (d *decoder) name(n ast.Node, field string) (string, bool) {
	s, ok := d.str(n, field)
	if !ok {
		return "", false
	}
	if !nameRE.MatchString(s) {
		d.errAt(n, "%s %q: use letters, digits, '.', '_' and '-' (at most 63, starting with a letter or digit)", field, s)
		return "", false
	}
	return s, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// positioned remembers where a value came from, for later cross-file checks.
type positioned struct {
	line, col int
}

func at(n ast.Node) positioned {
	l, c := NodePos(n)
	return positioned{l, c}
}

// decodeGroup decodes a group file. The returned positions locate the
// name and profile values for cross-file errors.
func (d *decoder) decodeGroup(data []byte) (g *Group, namePos, profilePos positioned, ok bool) {
	values := d.parseMapping(data)
	if values == nil {
		return nil, namePos, profilePos, false
	}
	before := len(d.c.errs)
	g = &Group{Source: d.path, Selector: map[string][]string{}, Metadata: map[string]any{}}
	var sawName, sawProfile bool
	var dhcpKey ast.Node
	d.fields(values, "group", []string{"name", "profile", "priority", "selector", "metadata", "dhcp"}, func(k string, v, kn ast.Node) {
		switch k {
		case "name":
			g.Name, sawName = d.name(v, "name")
			namePos = at(v)
		case "profile":
			g.Profile, sawProfile = d.name(v, "profile")
			profilePos = at(v)
		case "priority":
			g.Priority, _ = d.int(v, "priority")
		case "selector":
			d.decodeSelector(v, g.Selector)
		case "metadata":
			if m, ok := d.anyMap(v, "metadata"); ok {
				g.Metadata = m
			}
		case "dhcp":
			g.DHCP, dhcpKey = d.decodeGroupDHCP(v, kn), kn
		}
	})
	if g.DHCP != nil && len(g.Selector[KeyMAC]) != 1 {
		d.errAt(dhcpKey, "dhcp: a reservation needs a selector with exactly one mac (this group's selector has %d)", len(g.Selector[KeyMAC]))
	}
	clean := len(d.c.errs) == before
	if !sawName && clean {
		d.c.add(d.path, 1, 1, "group has no name: add `name: <group name>`")
	}
	if !sawProfile && clean {
		d.c.add(d.path, 1, 1, "group has no profile: add `profile: <profile name>`")
	}
	return g, namePos, profilePos, len(d.c.errs) == before
}

func (d *decoder) decodeSelector(n ast.Node, sel map[string][]string) {
	if Unwrap(n).Type() == ast.NullType {
		return
	}
	values, ok := MappingValues(n)
	if !ok {
		d.errAt(n, "selector: want a mapping of fact names to values, got %s", NodeKind(n))
		return
	}
	seen := map[string]bool{}
	for _, mv := range values {
		k := KeyName(mv)
		if seen[k] {
			d.errAt(mv.Key, "selector: duplicate key %q", k)
			continue
		}
		seen[k] = true
		field := "selector." + k
		if !nameRE.MatchString(k) {
			d.errAt(mv.Key, "%s: a selector key is a fact (mac, arch, firmware, uuid, hostname) or a label name", field)
			continue
		}
		vals, ok := d.strs(mv.Value, field, true)
		if !ok {
			continue
		}
		if len(vals) == 0 {
			d.errAt(mv.Value, "%s: an empty list matches nothing; remove the key or give values", field)
			continue
		}
		seq, _ := Unwrap(mv.Value).(*ast.SequenceNode)
		itemNode := func(i int) ast.Node {
			if seq != nil {
				return seq.Values[i]
			}
			return mv.Value
		}
		good := make([]string, 0, len(vals))
		for i, v := range vals {
			norm, err := normalizeSelectorValue(k, v)
			if err != nil {
				d.errAt(itemNode(i), "%s: %v", field, err)
				continue
			}
			good = append(good, norm)
		}
		if len(good) == len(vals) {
			sel[k] = good
		}
	}
}

// normalizeSelectorValue checks and canonicalises one selector value.
func normalizeSelectorValue(key, v string) (string, error) {
	switch key {
	case KeyMAC:
		return NormalizeMAC(v)
	case KeyArch:
		if !contains(Arches, v) {
			return "", fmt.Errorf("unknown arch %q (want one of %s)", v, strings.Join(Arches, ", "))
		}
	case KeyFirmware:
		if !contains(Firmwares, v) {
			return "", fmt.Errorf("unknown firmware %q (want one of %s)", v, strings.Join(Firmwares, ", "))
		}
	case KeyUUID:
		return strings.ToLower(v), nil
	}
	return v, nil
}

// decodeProfile decodes a profile file; errors go to the collector. It
// returns nil when the file has no mapping to decode.
func (d *decoder) decodeProfile(data []byte) (p *Profile, refs profileRefs) {
	values := d.parseMapping(data)
	if values == nil {
		return nil, refs
	}
	before := len(d.c.errs)
	p = &Profile{Source: d.path}
	var sawName bool
	d.fields(values, "profile", []string{"name", "boot", "ignition", "cloud_config"}, func(k string, v, kn ast.Node) {
		switch k {
		case "name":
			p.Name, sawName = d.name(v, "name")
			refs.name = at(v)
		case "ignition":
			p.Ignition, _ = d.str(v, "ignition")
			refs.ignition = at(v)
		case "cloud_config":
			p.CloudConfig, _ = d.str(v, "cloud_config")
			refs.cloud = at(v)
		case "boot":
			refs.args = d.decodeBoot(v, kn, &p.Boot, &refs)
		}
	})
	if !sawName && len(d.c.errs) == before {
		d.c.add(d.path, 1, 1, "profile has no name: add `name: <profile name>`")
	}
	if len(d.c.errs) != before {
		return p, refs
	}
	// Kernel arguments are templates too.
	for i, a := range p.Boot.Args {
		t, err := parseTemplate("args", a)
		if err != nil {
			line, col := refs.args[i].line, refs.args[i].col
			d.c.add(d.path, line, col, "boot.args[%d]: %s", i, templateErrMsg(err))
			continue
		}
		p.args = append(p.args, t)
	}
	return p, refs
}

type profileRefs struct {
	name, ignition, cloud, kernel positioned
	initrd, args                  []positioned
}

func (d *decoder) decodeBoot(n, key ast.Node, b *Boot, refs *profileRefs) []positioned {
	values, ok := MappingValues(n)
	if !ok {
		d.errAt(n, "boot: want a mapping with kernel, initrd and args, got %s", NodeKind(n))
		return nil
	}
	var args []positioned
	var sawKernel bool
	d.fields(values, "boot", []string{"kernel", "initrd", "args"}, func(k string, v, kn ast.Node) {
		switch k {
		case "kernel":
			b.Kernel, sawKernel = d.str(v, "boot.kernel")
			refs.kernel = at(v)
		case "initrd":
			b.Initrd, _ = d.strs(v, "boot.initrd", true)
			refs.initrd = itemPositions(v)
		case "args":
			b.Args, _ = d.strs(v, "boot.args", false)
			args = itemPositions(v)
		}
	})
	if !sawKernel {
		d.errAt(key, "boot: no kernel; add `kernel: /assets/...` or remove boot to boot from local disk")
	}
	return args
}

func itemPositions(n ast.Node) []positioned {
	if seq, ok := Unwrap(n).(*ast.SequenceNode); ok {
		out := make([]positioned, len(seq.Values))
		for i, v := range seq.Values {
			out[i] = at(v)
		}
		return out
	}
	return []positioned{at(n)}
}

var templateLineRE = regexp.MustCompile(`^template: [^:]+:(\d+)(?::(\d+))?: (.*)$`)

// templateErr splits a text/template parse error into the line and column
// it names (0 when absent) and the message without the "template: NAME:"
// prefix.
func templateErr(err error) (line, col int, msg string) {
	msg = err.Error()
	m := templateLineRE.FindStringSubmatch(msg)
	if m == nil {
		return 0, 0, msg
	}
	line, _ = strconv.Atoi(m[1])
	if m[2] != "" {
		col, _ = strconv.Atoi(m[2])
	}
	return line, col, m[3]
}

func templateErrMsg(err error) string {
	_, _, msg := templateErr(err)
	return msg
}

// decodeGroupDHCP decodes a group's `dhcp: {ip: 10.77.0.50}`.
func (d *decoder) decodeGroupDHCP(n, key ast.Node) *GroupDHCP {
	values, ok := MappingValues(n)
	if !ok {
		d.errAt(n, "dhcp: want a mapping such as {ip: 10.77.0.50}, got %s", NodeKind(n))
		return nil
	}
	var out *GroupDHCP
	d.fields(values, "dhcp", []string{"ip"}, func(k string, v, kn ast.Node) {
		s, ok := d.str(v, "dhcp.ip")
		if !ok {
			return
		}
		ip, err := netip.ParseAddr(s)
		if err != nil || !ip.Is4() || ip.IsUnspecified() || ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			d.errAt(v, "dhcp.ip %q: want a unicast IPv4 address", s)
			return
		}
		line, col := NodePos(v)
		out = &GroupDHCP{IP: ip, At: fmt.Sprintf("%s:%d:%d", d.path, line, col), pos: positioned{line, col}}
	})
	if out == nil && len(values) == 0 {
		d.errAt(key, "dhcp: give ip, or remove the key")
	}
	return out
}
