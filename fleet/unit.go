// Package fleet places units — containers with constraints — on the ready
// nodes of the inventory, and moves them when a node is lost. One bootfleet
// server at a time schedules (elected through etcd); every server answers
// its agents from the same placements.
package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/bootfleet/bootfleet/profiles"
)

// Unit is a container to run on the fleet: the units contract of
// ARCHITECTURE.md.
type Unit struct {
	Name        string            `yaml:"name" json:"name"`
	Image       string            `yaml:"image" json:"image"`
	Command     []string          `yaml:"command" json:"command,omitempty"`
	Env         map[string]string `yaml:"env" json:"env,omitempty"`
	Replicas    int               `yaml:"replicas" json:"replicas,omitempty"`
	Global      bool              `yaml:"global" json:"global,omitempty"`
	Constraints Constraints       `yaml:"constraints" json:"constraints"`
	Resources   Resources         `yaml:"resources" json:"resources"`
}

// Constraints limit where a unit's replicas may run. Every constraint set
// must hold.
type Constraints struct {
	// Metadata: the node's labels (and facts arch, group, profile,
	// hostname) must have these values.
	Metadata map[string]string `yaml:"metadata" json:"metadata,omitempty"`
	// Conflicts: never on a node running a unit whose name matches one of
	// these globs.
	Conflicts []string `yaml:"conflicts" json:"conflicts,omitempty"`
	// MachineOf: only on a node running (a replica of) this unit.
	MachineOf string `yaml:"machine_of" json:"machine_of,omitempty"`
	// Node: only on the node with this MAC.
	Node string `yaml:"node" json:"node,omitempty"`
}

// Resources a replica needs on its node; placement counts them against the
// node's memory and CPUs.
type Resources struct {
	// Memory is a size such as 512m or 2g (k, m, g are KiB, MiB, GiB).
	Memory string  `yaml:"memory" json:"memory,omitempty"`
	CPUs   float64 `yaml:"cpus" json:"cpus,omitempty"`
}

// MemoryBytes is Memory in bytes; 0 when unset. Parse has checked it.
func (r Resources) MemoryBytes() int64 {
	n, _ := ParseSize(r.Memory)
	return n
}

// Hash identifies what the unit runs: two units with the same hash make
// the same containers. Agents recreate a container when it changes.
func (u Unit) Hash() string {
	spec := struct {
		Image     string
		Command   []string
		Env       map[string]string
		Resources Resources
	}{u.Image, u.Command, u.Env, u.Resources}
	b, _ := json.Marshal(spec) // maps marshal sorted, so this is stable
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// ParseSize parses a memory size: a plain number of bytes, or a number with
// k, m, g or t (KiB, MiB, GiB, TiB; an optional trailing b or ib is fine).
func ParseSize(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "ib"), "b")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		case 't':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("size %q: want a number with k, m or g (KiB, MiB, GiB), e.g. 512m or 2g", s)
	}
	return int64(f * float64(mult)), nil
}

var unitNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// Parse reads the units of one file: one unit per YAML document. Every
// problem is reported, each as path:line:col, in a profiles.ErrorList.
func Parse(file string, data []byte) ([]Unit, error) {
	var errs profiles.ErrorList
	add := func(n ast.Node, format string, args ...any) {
		errs = append(errs, profiles.ErrorAt(file, n, format, args...))
	}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		errs = append(errs, profiles.YAMLError(file, err))
		return nil, errs.Err()
	}
	var units []Unit
	seen := map[string]ast.Node{}
	for _, doc := range f.Docs {
		if doc == nil || doc.Body == nil {
			continue
		}
		var u Unit
		if err := yaml.NodeToValue(doc.Body, &u, yaml.DisallowUnknownField(), yaml.Strict()); err != nil {
			errs = append(errs, profiles.YAMLError(file, err))
			continue
		}
		lookup := func(p string) (ast.Node, bool) {
			if yp, err := yaml.PathString(p); err == nil {
				if n, err := yp.FilterNode(doc.Body); err == nil && n != nil {
					return n, true
				}
			}
			return doc.Body, false
		}
		at := func(p string) ast.Node { n, _ := lookup(p); return n }
		before := len(errs)
		switch {
		case u.Name == "":
			add(doc.Body, "unit has no name (name: browsers)")
		case !unitNameRE.MatchString(u.Name):
			add(at("$.name"), "name %q: use lowercase letters, digits, '.', '_' and '-' (at most 63)", u.Name)
		default:
			if prev, dup := seen[u.Name]; dup {
				l, c := 0, 0
				if tk := prev.GetToken(); tk != nil && tk.Position != nil {
					l, c = tk.Position.Line, tk.Position.Column
				}
				add(at("$.name"), "unit %q is defined twice (first at line %d, column %d)", u.Name, l, c)
			}
			seen[u.Name] = at("$.name")
		}
		if u.Image == "" {
			add(doc.Body, "unit %s has no image (image: bootfleet/browser-load:latest)", u.Name)
		}
		switch {
		case u.Global && u.Replicas != 0:
			add(at("$.replicas"), "replicas and global: true exclude each other; a global unit runs once on every matching node")
		case u.Replicas < 0:
			add(at("$.replicas"), "replicas: %d is negative", u.Replicas)
		case !u.Global && u.Replicas == 0:
			if _, set := lookup("$.replicas"); !set {
				u.Replicas = 1 // replicas: 0 stops the unit; no key means one
			}
		}
		for i, g := range u.Constraints.Conflicts {
			if _, err := path.Match(g, ""); err != nil {
				add(at(fmt.Sprintf("$.constraints.conflicts[%d]", i)), "conflicts: %q is not a valid glob: %v", g, err)
			}
		}
		if u.Constraints.MachineOf != "" && u.Constraints.MachineOf == u.Name {
			add(at("$.constraints.machine_of"), "machine_of: a unit cannot follow itself")
		}
		if u.Constraints.Node != "" {
			mac, err := profiles.NormalizeMAC(u.Constraints.Node)
			if err != nil {
				add(at("$.constraints.node"), "node: %v", err)
			}
			u.Constraints.Node = mac
		}
		if _, err := ParseSize(u.Resources.Memory); err != nil {
			add(at("$.resources.memory"), "memory: %v", err)
		}
		if u.Resources.CPUs < 0 {
			add(at("$.resources.cpus"), "cpus: %g is negative", u.Resources.CPUs)
		}
		if len(errs) == before {
			units = append(units, u)
		}
	}
	if len(units) == 0 && len(errs) == 0 {
		add(nil, "no unit in the file")
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return units, nil
}

// Validate checks a unit that arrives without a file (through the API).
func Validate(u Unit) (Unit, error) {
	b, err := yaml.Marshal(u)
	if err != nil {
		return Unit{}, fmt.Errorf("unit: %w", err)
	}
	units, err := Parse("unit "+u.Name, b)
	if err != nil {
		return Unit{}, err
	}
	if len(units) != 1 {
		return Unit{}, errors.New("unit: want exactly one unit")
	}
	return units[0], nil
}

// ContainerName is the container of a unit's replica, as operators find it
// with docker ps / podman ps.
func ContainerName(unit string, replica int) string {
	return unit + "-" + strconv.Itoa(replica)
}

// matchesAny says whether name matches one of the globs.
func matchesAny(globs []string, name string) bool {
	return slices.ContainsFunc(globs, func(g string) bool {
		ok, _ := path.Match(g, name)
		return ok
	})
}
