package profiles

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"path"
	"slices"
	"strings"
)

// Load reads and validates the profiles directory fsys, whose name for
// error messages is root. On any problem it returns an ErrorList with every
// problem found.
func Load(fsys fs.FS, root string) (*Set, error) {
	c := &errorCollector{}
	s := &Set{
		Root:     root,
		FS:       fsys,
		Profiles: map[string]*Profile{},
		Ignition: map[string]*Template{},
		Cloud:    map[string]*Template{},
	}
	display := func(p string) string { return path.Join(root, p) }

	// Templates first, so profiles can be checked against them.
	loadTemplates := func(dir string, exts []string, into map[string]*Template) {
		for _, name := range listFiles(fsys, dir, exts, c, display) {
			p := path.Join(dir, name)
			data, err := fs.ReadFile(fsys, p)
			if err != nil {
				c.add(display(p), 0, 0, "read: %v", err)
				continue
			}
			t := &Template{Name: name, Path: display(p), Text: string(data)}
			tmpl, err := parseTemplate(name, t.Text)
			if err != nil {
				line, col, msg := templateErr(err)
				c.add(t.Path, line, col, "template: %s", msg)
				continue
			}
			t.tmpl = tmpl
			into[name] = t
		}
	}
	loadTemplates("ignition", []string{".bu"}, s.Ignition)
	loadTemplates("cloud", []string{".yaml", ".yml"}, s.Cloud)

	type profileAt struct {
		p    *Profile
		refs profileRefs
	}
	var profs []profileAt
	for _, name := range listFiles(fsys, "profiles", []string{".yaml", ".yml"}, c, display) {
		p := path.Join("profiles", name)
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			c.add(display(p), 0, 0, "read: %v", err)
			continue
		}
		d := &decoder{path: display(p), c: c}
		prof, refs := d.decodeProfile(data)
		if prof == nil || prof.Name == "" {
			continue
		}
		if prev, dup := s.Profiles[prof.Name]; dup {
			c.add(d.path, refs.name.line, refs.name.col, "profile %q is already defined in %s", prof.Name, prev.Source)
			continue
		}
		s.Profiles[prof.Name] = prof
		// References are checked even when the file has other errors, so
		// that one run reports everything.
		profs = append(profs, profileAt{prof, refs})
	}
	for _, pa := range profs {
		p, refs := pa.p, pa.refs
		if p.Ignition != "" && s.Ignition[p.Ignition] == nil && !fileExists(fsys, path.Join("ignition", p.Ignition)) {
			c.add(p.Source, refs.ignition.line, refs.ignition.col, "ignition: %s not found (want a file under %s)", p.Ignition, display("ignition"))
		}
		if p.CloudConfig != "" && s.Cloud[p.CloudConfig] == nil && !fileExists(fsys, path.Join("cloud", p.CloudConfig)) {
			c.add(p.Source, refs.cloud.line, refs.cloud.col, "cloud_config: %s not found (want a file under %s)", p.CloudConfig, display("cloud"))
		}
		checkAsset := func(ref string, at positioned, field string) {
			if rel, ok := strings.CutPrefix(ref, "/assets/"); ok && !fileExists(fsys, path.Join("assets", rel)) {
				c.warn(p.Source, at.line, at.col, "%s: %s is not in %s yet (import it or fix the path)", field, ref, display("assets"))
			}
		}
		checkAsset(p.Boot.Kernel, refs.kernel, "boot.kernel")
		for i, in := range p.Boot.Initrd {
			if i < len(refs.initrd) {
				checkAsset(in, refs.initrd[i], fmt.Sprintf("boot.initrd[%d]", i))
			}
		}
	}

	type groupAt struct {
		g          *Group
		name, prof positioned
	}
	var groups []groupAt
	byName := map[string]*Group{}
	for _, name := range listFiles(fsys, "groups", []string{".yaml", ".yml"}, c, display) {
		p := path.Join("groups", name)
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			c.add(display(p), 0, 0, "read: %v", err)
			continue
		}
		d := &decoder{path: display(p), c: c}
		g, namePos, profPos, ok := d.decodeGroup(data)
		if g == nil || g.Name == "" {
			continue
		}
		if prev, dup := byName[g.Name]; dup {
			c.add(d.path, namePos.line, namePos.col, "group %q is already defined in %s", g.Name, prev.Source)
			continue
		}
		byName[g.Name] = g
		if g.Profile != "" && s.Profiles[g.Profile] == nil {
			c.add(d.path, profPos.line, profPos.col, "profile %q not found (known profiles: %s)", g.Profile, strings.Join(sortedKeys(s.Profiles), ", "))
			ok = false
		}
		if ok {
			groups = append(groups, groupAt{g, namePos, profPos})
		}
	}
	for _, ga := range groups {
		s.Groups = append(s.Groups, ga.g)
	}
	checkReservations(s.Groups, c)
	sortGroups(s.Groups)
	s.index()
	// Groups with the same selector and priority would be decided by name
	// alone, which is almost always a mistake.
	for i := 1; i < len(s.Groups); i++ {
		a, b := s.Groups[i-1], s.Groups[i]
		if a.Priority == b.Priority && selectorKey(a.Selector) == selectorKey(b.Selector) {
			var bPos positioned
			for _, ga := range groups {
				if ga.g == b {
					bPos = ga.name
				}
			}
			c.add(b.Source, bPos.line, bPos.col, "group %q has the same selector and priority as group %q (%s): set a different priority or selector", b.Name, a.Name, a.Source)
		}
	}
	for name := range s.Profiles {
		used := false
		for _, g := range s.Groups {
			used = used || g.Profile == name
		}
		if !used {
			c.warn(s.Profiles[name].Source, 0, 0, "profile %q is not used by any group", name)
		}
	}
	if len(s.Groups) == 0 && len(c.errs) == 0 {
		c.add(display("groups"), 0, 0, "no groups: add at least one file under groups/ (a group without selector is the default)")
	}
	c.warnings.Sort()
	s.Warnings = c.warnings
	if err := c.errs.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

// listFiles returns the sorted names of regular files in dir with one of the
// extensions. A missing dir is empty; hidden and backup files are skipped.
func listFiles(fsys fs.FS, dir string, exts []string, c *errorCollector, display func(string) string) []string {
	entries, err := fs.ReadDir(fsys, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		c.add(display(dir), 0, 0, "read directory: %v", err)
		return nil
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") || e.IsDir() {
			continue
		}
		if !slices.Contains(exts, path.Ext(name)) {
			c.warn(display(path.Join(dir, name)), 0, 0, "ignored: only %s files are read here", strings.Join(exts, ", "))
			continue
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func fileExists(fsys fs.FS, p string) bool {
	st, err := fs.Stat(fsys, p)
	return err == nil && st.Mode().IsRegular()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkReservations reports two groups that reserve one address, or one
// MAC with two addresses (groups in file order, so the later one is blamed).
func checkReservations(groups []*Group, c *errorCollector) {
	byIP := map[netip.Addr]*Group{}
	byMAC := map[string]*Group{}
	for _, g := range groups {
		if g.DHCP == nil {
			continue
		}
		mac, at := g.Selector[KeyMAC][0], g.DHCP.pos
		if o, dup := byIP[g.DHCP.IP]; dup && o.Selector[KeyMAC][0] != mac {
			c.add(g.Source, at.line, at.col, "dhcp.ip %v is already reserved for %s by group %q (%s)", g.DHCP.IP, o.Selector[KeyMAC][0], o.Name, o.DHCP.At)
			continue
		}
		if o, dup := byMAC[mac]; dup && o.DHCP.IP != g.DHCP.IP {
			c.add(g.Source, at.line, at.col, "dhcp.ip: %s already has the reservation %v from group %q (%s)", mac, o.DHCP.IP, o.Name, o.DHCP.At)
			continue
		}
		byIP[g.DHCP.IP], byMAC[mac] = g, g
	}
}
