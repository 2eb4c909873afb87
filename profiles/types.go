package profiles

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"
	"strings"
	"text/template"
)

// Selector keys with a meaning of their own. Any other key matches a node
// label of that name.
const (
	KeyMAC      = "mac"
	KeyArch     = "arch"
	KeyFirmware = "firmware"
	KeyUUID     = "uuid"
	KeyHostname = "hostname"
)

// Architectures and firmware kinds that selectors and facts use.
var (
	Arches    = []string{"x86_64", "arm64"}
	Firmwares = []string{"bios", "uefi"}
)

// Group selects machines by their facts and names the profile they boot.
// A group with an empty selector is a default group.
type Group struct {
	Name     string
	Profile  string
	Priority int
	// Selector maps a fact name to the values it may take; a node matches
	// when, for every key, its fact equals one of the values. MACs are
	// normalized to lowercase with colons, UUIDs to lowercase.
	Selector map[string][]string
	Metadata map[string]any
	// DHCP is the group's DHCP reservation, if any: allowed only when the
	// selector names exactly one MAC, which then always gets DHCP.IP.
	DHCP *GroupDHCP
	// Source is the file the group was loaded from.
	Source string
}

// GroupDHCP is the `dhcp:` section of a group.
type GroupDHCP struct {
	// IP is the address reserved for the group's one MAC.
	IP netip.Addr
	// At locates the ip value as path:line:col, for errors found later
	// (an address outside the DHCP server's subnet, say).
	At string

	pos positioned
}

// Reservation is one MAC's fixed DHCP address from a group.
type Reservation struct {
	MAC   string // lowercase, colons
	IP    netip.Addr
	Group string
	At    string // path:line:col of the ip value
}

// Reservations lists the groups' DHCP reservations, sorted by MAC.
func (s *Set) Reservations() []Reservation {
	var out []Reservation
	for _, g := range s.Groups {
		if g.DHCP != nil {
			out = append(out, Reservation{MAC: g.Selector[KeyMAC][0], IP: g.DHCP.IP, Group: g.Name, At: g.DHCP.At})
		}
	}
	slices.SortFunc(out, func(a, b Reservation) int { return strings.Compare(a.MAC, b.MAC) })
	return out
}

// Profile says what a machine boots and which templates configure it.
type Profile struct {
	Name        string
	Boot        Boot
	Ignition    string // file name under ignition/, optional
	CloudConfig string // file name under cloud/, optional
	Source      string

	args []*template.Template
}

// Boot is the kernel, initrds and kernel arguments of a profile. Paths that
// start with /assets/ are served from the directory's assets/; anything else
// is used as written (an http URL, say).
type Boot struct {
	Kernel string
	Initrd []string
	Args   []string
}

// Facts are what bootfleet knows about a machine when it matches it.
type Facts struct {
	MAC      string // canonical form, see NormalizeMAC
	Arch     string // x86_64 | arm64 | "" when unknown
	Firmware string // bios | uefi | "" when unknown
	UUID     string
	Hostname string
	Labels   map[string]string
}

// TemplateData is what Butane templates, cloud-config templates and
// boot.args are executed with.
type TemplateData struct {
	MAC        string
	IP         string
	UUID       string
	Arch       string
	Hostname   string
	Group      string
	Profile    string
	Metadata   map[string]any
	ServerURL  string
	AgentURL   string
	AgentToken string
}

// Template is a parsed template file of the directory (ignition/*.bu or
// cloud/*.yaml).
type Template struct {
	Name string // file name, e.g. worker.bu
	Path string // path as reported in errors
	Text string
	tmpl *template.Template
}

// Execute runs the template with the node's data. A missing map key is an
// error, not an empty string.
func (t *Template) Execute(data TemplateData) ([]byte, error) {
	var buf bytes.Buffer
	if err := t.tmpl.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("execute %s: %w", t.Path, err)
	}
	return buf.Bytes(), nil
}

// RenderArgs returns the profile's kernel arguments executed with the node's
// data.
func (p *Profile) RenderArgs(data TemplateData) ([]string, error) {
	out := make([]string, 0, len(p.args))
	var buf bytes.Buffer
	for i, t := range p.args {
		buf.Reset()
		if err := t.Execute(&buf, data); err != nil {
			return nil, fmt.Errorf("profile %s: boot.args[%d]: %w", p.Name, i, err)
		}
		out = append(out, buf.String())
	}
	return out, nil
}

// Set is one loaded, valid profiles directory. It is immutable: a reload
// builds a new Set.
type Set struct {
	// Root is the directory as the user named it; error paths start with it.
	Root string
	// FS is the directory itself.
	FS fs.FS
	// Groups in match order: most selector keys first, then higher
	// priority, then name.
	Groups   []*Group
	Profiles map[string]*Profile
	Ignition map[string]*Template
	Cloud    map[string]*Template
	// Warnings are problems that do not stop the directory from serving,
	// such as a kernel path missing from assets/.
	Warnings ErrorList

	// byMAC lists, in match order, the indexes of groups whose selector
	// names the MAC; others holds the indexes of all other groups. Match
	// merges the two, so per-MAC groups cost a map look-up, not a scan.
	byMAC  map[string][]int
	others []int
}

// Assets returns the directory's assets/ tree.
func (s *Set) Assets() fs.FS {
	sub, err := fs.Sub(s.FS, "assets")
	if err != nil { // only for an invalid name, which "assets" is not
		panic(err)
	}
	return sub
}

// Group returns the group with that name, or nil.
func (s *Set) Group(name string) *Group {
	for _, g := range s.Groups {
		if g.Name == name {
			return g
		}
	}
	return nil
}

// Data returns the template data for a node matched to this group and
// profile, with the node-specific fields left to the caller.
func (m Match) Data(f Facts) TemplateData {
	return TemplateData{
		MAC:      f.MAC,
		UUID:     f.UUID,
		Arch:     f.Arch,
		Hostname: f.Hostname,
		Group:    m.Group.Name,
		Profile:  m.Profile.Name,
		Metadata: m.Group.Metadata,
	}
}

func templateFuncs() template.FuncMap {
	return template.FuncMap{
		"upper": strings.ToUpper,
		"lower": strings.ToLower,
		"join":  func(sep string, v []string) string { return strings.Join(v, sep) },
		"replace": func(old, new, s string) string {
			return strings.ReplaceAll(s, old, new)
		},
		"default": func(def, v any) any {
			if v == nil || v == "" {
				return def
			}
			return v
		},
	}
}

func parseTemplate(name, text string) (*template.Template, error) {
	return template.New(name).Option("missingkey=error").Funcs(templateFuncs()).Parse(text)
}
