// Package ignition renders a node's Ignition config: the profile's Butane
// template executed with the node's data, transpiled by Butane, validated by
// Ignition, cached by the rendered text so that a fleet of machines costs
// one transpile per distinct config, and extended per node by an optional
// Injector (the node agent's files and units). It also renders cloud-config.
package ignition

import (
	"bytes"
	"container/list"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	butane "github.com/coreos/butane/config"
	"github.com/coreos/butane/config/common"
	v30 "github.com/coreos/ignition/v2/config/v3_0"
	v31 "github.com/coreos/ignition/v2/config/v3_1"
	v32 "github.com/coreos/ignition/v2/config/v3_2"
	v33 "github.com/coreos/ignition/v2/config/v3_3"
	v34 "github.com/coreos/ignition/v2/config/v3_4"
	v35 "github.com/coreos/ignition/v2/config/v3_5"
	v36 "github.com/coreos/ignition/v2/config/v3_6"
	"github.com/coreos/vcontext/report"
	"github.com/goccy/go-yaml"
	"golang.org/x/sync/singleflight"

	"github.com/bootfleet/bootfleet/profiles"
)

// ErrNoTemplate means the profile has no Ignition (or cloud-config)
// template; the node gets none.
var ErrNoTemplate = errors.New("profile has no template of that kind")

// File is a file the Injector adds to a node's Ignition config.
type File struct {
	Path string
	Mode int // e.g. 0o644
	// Contents is the file's content, embedded as a data URL; or Source, a
	// URL Ignition fetches (e.g. the agent binary from bootfleet).
	Contents []byte
	Source   string
}

// Unit is a systemd unit the Injector adds (and enables).
type Unit struct {
	Name     string
	Contents string
}

// Addition is what an Injector adds to one node's config.
type Addition struct {
	Files []File
	Units []Unit
}

// Injector returns per-node additions; nil adds nothing. It runs on every
// render, after the cache, so it must be cheap.
type Injector func(profiles.TemplateData) (Addition, error)

// Options configure a Renderer.
type Options struct {
	Log *slog.Logger
	// CacheEntries bounds the cache of transpiled configs; default 4096.
	CacheEntries int
	Inject       Injector
}

// Renderer renders the templates of one profiles Set. A reload makes a new
// Renderer; nothing is shared between them.
type Renderer struct {
	set    *profiles.Set
	log    *slog.Logger
	inject Injector
	// Warnings are Butane's and Ignition's warnings for the set's
	// templates, found when the Renderer was made.
	Warnings profiles.ErrorList

	cache  *lru // rendered Butane text → transpiled config
	nodes  *lru // node data → final config
	flight singleflight.Group
	hits   atomic.Uint64
	misses atomic.Uint64
}

// New checks every template of the set by rendering it for every group that
// uses it (with that group's metadata and sample node data), transpiling and
// validating it, and returns every problem as a profiles.ErrorList.
func New(set *profiles.Set, opts Options) (*Renderer, error) {
	if opts.CacheEntries <= 0 {
		opts.CacheEntries = 4096
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	r := &Renderer{set: set, log: opts.Log, inject: opts.Inject, cache: newLRU(opts.CacheEntries), nodes: newLRU(opts.CacheEntries)}
	var errs profiles.ErrorList
	seen := map[string]bool{} // one report per template+message
	add := func(list *profiles.ErrorList, e *profiles.Error) {
		key := e.Error()
		if !seen[key] {
			seen[key] = true
			*list = append(*list, e)
		}
	}
	for _, g := range set.Groups {
		p := set.Profiles[g.Profile]
		data := SampleData(g, p)
		if p.Ignition != "" {
			t := set.Ignition[p.Ignition]
			for _, e := range r.check(t, g, data) {
				if e.warning {
					add(&r.Warnings, e.err)
				} else {
					add(&errs, e.err)
				}
			}
		}
		if p.CloudConfig != "" {
			t := set.Cloud[p.CloudConfig]
			out, err := t.Execute(data)
			if err == nil {
				err = checkCloudConfig(out)
			}
			if err != nil {
				add(&errs, locate(t.Path, err, g.Name))
			}
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	r.Warnings.Sort()
	return r, nil
}

// SampleData is the node data templates are checked with: the group's
// metadata and plausible values for the node fields.
func SampleData(g *profiles.Group, p *profiles.Profile) profiles.TemplateData {
	return profiles.TemplateData{
		MAC:        "52:54:00:00:00:01",
		IP:         "10.0.0.2",
		UUID:       "00000000-0000-0000-0000-000000000001",
		Arch:       "x86_64",
		Hostname:   "node1",
		Group:      g.Name,
		Profile:    p.Name,
		Metadata:   g.Metadata,
		ServerURL:  "http://bootfleet.invalid:8080",
		AgentURL:   "http://bootfleet.invalid:8080/agent/bootfleet-agent-amd64",
		AgentToken: "sample-token",
	}
}

type checkResult struct {
	err     *profiles.Error
	warning bool
}

func (r *Renderer) check(t *profiles.Template, g *profiles.Group, data profiles.TemplateData) []checkResult {
	text, err := t.Execute(data)
	if err != nil {
		return []checkResult{{err: locate(t.Path, err, g.Name)}}
	}
	_, rep, err := transpile(text)
	var out []checkResult
	for _, e := range rep.Entries {
		line, col := e.Marker.Start()
		out = append(out, checkResult{
			err:     &profiles.Error{Path: t.Path, Line: int(line), Col: int(col), Msg: fmt.Sprintf("butane %s: %s (rendered for group %s)", e.Kind, e.Message, g.Name)},
			warning: e.Kind != report.Error,
		})
	}
	if err != nil && !rep.IsFatal() {
		out = append(out, checkResult{err: locate(t.Path, err, g.Name)})
	}
	return out
}

// locate turns a template or YAML error into a located profiles.Error.
func locate(path string, err error, group string) *profiles.Error {
	msg := err.Error()
	line := 0
	// text/template: "template: NAME:LINE:COL: executing ..."; yaml: "line N:" or "[N:M]".
	if i := strings.Index(msg, ": executing "); i >= 0 {
		head := msg[:i]
		parts := strings.Split(head, ":")
		if len(parts) >= 2 {
			fmt.Sscanf(parts[len(parts)-2], "%d", &line)
			if line == 0 {
				fmt.Sscanf(parts[len(parts)-1], "%d", &line)
			}
		}
		msg = msg[i+2:]
	} else if _, after, ok := strings.Cut(msg, "line "); ok {
		fmt.Sscanf(after, "%d", &line)
	}
	return &profiles.Error{Path: path, Line: line, Msg: fmt.Sprintf("%s (rendered for group %s)", msg, group)}
}

// transpile runs Butane (strict: warnings are reported, errors fatal) and
// checks the result with Ignition's parser for its spec version. Butane's
// automatic gzip of file contents is off: it made a gzip writer (~1 MiB of
// state) per file per node, a third of a render's CPU and most of its
// garbage in a boot storm, to save bytes on a LAN.
func transpile(butaneText []byte) ([]byte, report.Report, error) {
	out, rep, err := butane.TranslateBytes(butaneText, common.TranslateBytesOptions{Raw: true, TranslateOptions: common.TranslateOptions{NoResourceAutoCompression: true}})
	if err != nil {
		return nil, rep, fmt.Errorf("butane: %w", err)
	}
	if rep.IsFatal() {
		return nil, rep, fmt.Errorf("butane: %s", rep.String())
	}
	irep, err := validate(out)
	rep.Merge(irep)
	if err != nil {
		return nil, rep, err
	}
	return out, rep, nil
}

// validate parses an Ignition config with the parser of its own spec
// version (never the experimental one).
func validate(cfg []byte) (report.Report, error) {
	var head struct {
		Ignition struct {
			Version string `json:"version"`
		} `json:"ignition"`
	}
	if err := json.Unmarshal(cfg, &head); err != nil {
		return report.Report{}, fmt.Errorf("ignition: not JSON: %w", err)
	}
	var rep report.Report
	var err error
	switch head.Ignition.Version {
	case "3.0.0":
		_, rep, err = v30.Parse(cfg)
	case "3.1.0":
		_, rep, err = v31.Parse(cfg)
	case "3.2.0":
		_, rep, err = v32.Parse(cfg)
	case "3.3.0":
		_, rep, err = v33.Parse(cfg)
	case "3.4.0":
		_, rep, err = v34.Parse(cfg)
	case "3.5.0":
		_, rep, err = v35.Parse(cfg)
	case "3.6.0":
		_, rep, err = v36.Parse(cfg)
	default:
		return rep, fmt.Errorf("ignition: spec version %q is not supported (want 3.0.0 to 3.6.0)", head.Ignition.Version)
	}
	if err != nil {
		return rep, fmt.Errorf("ignition %s: %w", head.Ignition.Version, err)
	}
	if rep.IsFatal() {
		return rep, fmt.Errorf("ignition %s: %s", head.Ignition.Version, rep.String())
	}
	return rep, nil
}

// Validate parses an Ignition config as a node would and reports whether it
// has errors; tests use it on every rendered config.
func Validate(cfg []byte) error {
	_, err := validate(cfg)
	return err
}

// Stats reports cache hits and misses since the Renderer was made.
func (r *Renderer) Stats() (hits, misses uint64) {
	return r.hits.Load(), r.misses.Load()
}

// Ignition renders the node's Ignition config: compact, deterministic JSON.
func (r *Renderer) Ignition(m profiles.Match, d profiles.TemplateData) ([]byte, []string, error) {
	if m.Profile.Ignition == "" {
		return nil, nil, fmt.Errorf("profile %s: %w (no ignition: key)", m.Profile.Name, ErrNoTemplate)
	}
	// A node asking again with the same data gets the same bytes: skip the
	// template. Within one Renderer a group's metadata is fixed, so the
	// group's name stands for it.
	nk := nodeKey(d)
	if c, ok := r.nodes.get(nk); ok {
		r.hits.Add(1)
		return c.cfg, c.warnings, nil
	}
	t := r.set.Ignition[m.Profile.Ignition]
	text, err := t.Execute(d)
	if err != nil {
		return nil, nil, fmt.Errorf("render %s for %s: %w", t.Path, d.MAC, err)
	}
	key := sha256.Sum256(text)
	cfg, warnings, err := r.transpileCached(key, text)
	if err != nil {
		return nil, nil, fmt.Errorf("%s for %s: %w", t.Path, d.MAC, err)
	}
	if r.inject != nil {
		add, err := r.inject(d)
		if err != nil {
			return nil, nil, fmt.Errorf("inject for %s: %w", d.MAC, err)
		}
		if cfg, err = splice(cfg, add); err != nil {
			return nil, nil, fmt.Errorf("inject for %s: %w", d.MAC, err)
		}
	}
	r.nodes.put(nk, cached{cfg: cfg, warnings: warnings})
	return cfg, warnings, nil
}

// nodeKey identifies a node's template data within one Renderer.
func nodeKey(d profiles.TemplateData) [32]byte {
	h := sha256.New()
	for _, f := range []string{d.MAC, d.IP, d.UUID, d.Arch, d.Hostname, d.Group, d.Profile, d.ServerURL, d.AgentURL, d.AgentToken} {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

type cached struct {
	cfg      []byte
	warnings []string
}

func (r *Renderer) transpileCached(key [32]byte, text []byte) ([]byte, []string, error) {
	if c, ok := r.cache.get(key); ok {
		r.hits.Add(1)
		return c.cfg, c.warnings, nil
	}
	v, err, _ := r.flight.Do(string(key[:]), func() (any, error) {
		if c, ok := r.cache.get(key); ok {
			return c, nil
		}
		r.misses.Add(1)
		cfg, rep, err := transpile(text)
		if err != nil {
			return nil, err
		}
		c := cached{cfg: cfg}
		for _, e := range rep.Entries {
			c.warnings = append(c.warnings, e.String())
		}
		r.cache.put(key, c)
		return c, nil
	})
	if err != nil {
		return nil, nil, err
	}
	c := v.(cached)
	return c.cfg, c.warnings, nil
}

// CloudConfig renders the node's cloud-config.
func (r *Renderer) CloudConfig(m profiles.Match, d profiles.TemplateData) ([]byte, error) {
	if m.Profile.CloudConfig == "" {
		return nil, fmt.Errorf("profile %s: %w (no cloud_config: key)", m.Profile.Name, ErrNoTemplate)
	}
	t := r.set.Cloud[m.Profile.CloudConfig]
	out, err := t.Execute(d)
	if err != nil {
		return nil, fmt.Errorf("render %s for %s: %w", t.Path, d.MAC, err)
	}
	return out, nil
}

// checkCloudConfig checks a rendered cloud-config as cloud-init would read
// it: the #cloud-config header and YAML that parses.
func checkCloudConfig(out []byte) error {
	if !bytes.HasPrefix(out, []byte("#cloud-config")) {
		return errors.New("line 1: a cloud-config must start with #cloud-config (cloud-init ignores it otherwise)")
	}
	var v map[string]any
	if err := yaml.Unmarshal(out, &v); err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) && ye.GetToken() != nil && ye.GetToken().Position != nil {
			return fmt.Errorf("line %d: %s", ye.GetToken().Position.Line, ye.GetMessage())
		}
		return err
	}
	return nil
}

// splice adds files and units to a rendered Ignition config. It works on
// the JSON of any 3.x spec, whose storage.files and systemd.units share one
// shape, so the cached config is never re-parsed into typed structs.
func splice(cfg []byte, add Addition) ([]byte, error) {
	if len(add.Files) == 0 && len(add.Units) == 0 {
		return cfg, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(cfg, &top); err != nil {
		return nil, err
	}
	appendTo := func(section, list string, items []any) error {
		if len(items) == 0 {
			return nil
		}
		sec := map[string]json.RawMessage{}
		if raw, ok := top[section]; ok {
			if err := json.Unmarshal(raw, &sec); err != nil {
				return err
			}
		}
		var arr []json.RawMessage
		if raw, ok := sec[list]; ok {
			if err := json.Unmarshal(raw, &arr); err != nil {
				return err
			}
		}
		for _, it := range items {
			b, err := json.Marshal(it)
			if err != nil {
				return err
			}
			arr = append(arr, b)
		}
		var err error
		if sec[list], err = json.Marshal(arr); err != nil {
			return err
		}
		top[section], err = json.Marshal(sec)
		return err
	}
	type contents struct {
		Source string `json:"source"`
	}
	type file struct {
		Path      string   `json:"path"`
		Mode      int      `json:"mode"`
		Overwrite bool     `json:"overwrite"`
		Contents  contents `json:"contents"`
	}
	type unit struct {
		Name     string `json:"name"`
		Enabled  bool   `json:"enabled"`
		Contents string `json:"contents"`
	}
	var files, units []any
	for _, f := range add.Files {
		src := f.Source
		if src == "" {
			src = dataURL(f.Contents)
		}
		files = append(files, file{Path: f.Path, Mode: f.Mode, Overwrite: true, Contents: contents{Source: src}})
	}
	for _, u := range add.Units {
		units = append(units, unit{Name: u.Name, Enabled: true, Contents: u.Contents})
	}
	if err := appendTo("storage", "files", files); err != nil {
		return nil, err
	}
	if err := appendTo("systemd", "units", units); err != nil {
		return nil, err
	}
	return json.Marshal(top) // map keys sorted: deterministic
}

// dataURL encodes contents as an RFC 2397 data URL, percent-encoded.
func dataURL(b []byte) string {
	const hex = "0123456789ABCDEF"
	var sb strings.Builder
	sb.WriteString("data:,")
	for _, c := range b {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.~", c) >= 0 {
			sb.WriteByte(c)
			continue
		}
		sb.WriteByte('%')
		sb.WriteByte(hex[c>>4])
		sb.WriteByte(hex[c&15])
	}
	return sb.String()
}

// lru is a bounded, concurrency-safe least-recently-used cache.
type lru struct {
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[[32]byte]*list.Element
}

type lruEntry struct {
	key [32]byte
	val cached
}

func newLRU(max int) *lru {
	return &lru{max: max, ll: list.New(), items: map[[32]byte]*list.Element{}}
}

func (c *lru) get(k [32]byte) (cached, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*lruEntry).val, true
	}
	return cached{}, false
}

func (c *lru) put(k [32]byte, v cached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		e.Value.(*lruEntry).val = v
		c.ll.MoveToFront(e)
		return
	}
	c.items[k] = c.ll.PushFront(&lruEntry{key: k, val: v})
	for c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.items, last.Value.(*lruEntry).key)
	}
}
