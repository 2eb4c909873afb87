package httpboot

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
)

// bootIPXE is the script every iPXE gets first: it asks for the machine's
// own script by MAC (never by source IP, which NAT and relays hide), with
// its arch, firmware and UUID, and retries while the server has none.
func (s *Server) bootIPXE(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, `#!ipxe
# bootfleet: ask for this machine's own boot script.
iseq ${platform} efi && set bootfleet_fw uefi || set bootfleet_fw bios
:retry
chain --replace --autofree %s/ipxe?mac=${mac:hexhyp}&arch=${buildarch}&firmware=${bootfleet_fw}&uuid=${uuid} || goto failed
:failed
echo bootfleet: no boot script for ${mac} yet, trying again in 10 seconds
sleep 10
goto retry
`, s.base(r))
}

// assetURL makes a profile's /assets/ path absolute, tagged with the MAC
// so that the download becomes a step on the machine's timeline.
func assetURL(base, ref, mac string) string {
	if !strings.HasPrefix(ref, "/") {
		return ref
	}
	return base + ref + "?mac=" + url.QueryEscape(mac)
}

// kernelArgs returns the profile's rendered args plus what bootfleet adds:
// the Ignition (or cloud-config) URL unless the profile sets it.
func (s *Server) kernelArgs(n *node) ([]string, error) {
	args, err := n.match.Profile.RenderArgs(n.data)
	if err != nil {
		return nil, err
	}
	has := func(prefix string) bool {
		return slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, prefix) })
	}
	switch p := n.match.Profile; {
	case p.Ignition != "" && !has("ignition.config.url="):
		args = append(args, "ignition.config.url="+n.data.ServerURL+"/ignition?mac="+n.facts.MAC)
	case p.Ignition == "" && p.CloudConfig != "" && !has("cloud-config-url="):
		args = append(args, "cloud-config-url="+n.data.ServerURL+"/cloud-config?mac="+n.facts.MAC)
	}
	return args, nil
}

func initrdName(ref string, i int) string {
	base := path.Base(strings.SplitN(ref, "?", 2)[0])
	if base == "." || base == "/" || base == "" {
		return fmt.Sprintf("initrd%d", i)
	}
	return base
}

func (s *Server) ipxeScript(w http.ResponseWriter, r *http.Request, n *node) (int, error) {
	p := n.match.Profile
	var b bytes.Buffer
	b.WriteString("#!ipxe\n")
	fmt.Fprintf(&b, "# bootfleet: mac=%s group=%s profile=%s\n", n.facts.MAC, n.match.Group.Name, p.Name)
	if p.Boot.Kernel == "" {
		b.WriteString("echo bootfleet: profile " + p.Name + " boots the local disk\n")
		b.WriteString("iseq ${platform} efi && exit || sanboot --no-describe --drive 0x80\n")
	} else {
		args, err := s.kernelArgs(n)
		if err != nil {
			return http.StatusInternalServerError, err
		}
		var names []string
		for i, in := range p.Boot.Initrd {
			names = append(names, "initrd="+initrdName(in, i))
		}
		fmt.Fprintf(&b, "kernel %s %s\n", assetURL(n.data.ServerURL, p.Boot.Kernel, n.facts.MAC), strings.Join(append(names, args...), " "))
		for i, in := range p.Boot.Initrd {
			fmt.Fprintf(&b, "initrd --name %s %s\n", initrdName(in, i), assetURL(n.data.ServerURL, in, n.facts.MAC))
		}
		b.WriteString("boot\n")
	}
	s.served(n, "ipxe", "profile "+p.Name)
	if p.Boot.Kernel != "" {
		s.warmIgnition(n)
	}
	if n.nextBoot && p.Ignition == "" && p.CloudConfig == "" {
		s.cfg.ClearNextBoot(n.facts.MAC)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(b.Bytes())
	return http.StatusOK, nil
}

// grubURL turns an http URL into GRUB's (http,host:port)/path form.
func grubURL(ref string) string {
	u, err := url.Parse(ref)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return ref
	}
	return "(" + u.Scheme + "," + u.Host + ")" + u.RequestURI()
}

func (s *Server) grubConfig(w http.ResponseWriter, r *http.Request, n *node) (int, error) {
	p := n.match.Profile
	if p.Boot.Kernel == "" {
		return http.StatusNotFound, fmt.Errorf("profile %s has no boot.kernel: nothing for GRUB to boot", p.Name)
	}
	args, err := s.kernelArgs(n)
	if err != nil {
		return http.StatusInternalServerError, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# bootfleet: mac=%s group=%s profile=%s\n", n.facts.MAC, n.match.Group.Name, p.Name)
	b.WriteString("set default=0\nset timeout=0\n")
	fmt.Fprintf(&b, "menuentry %q {\n", "bootfleet "+p.Name)
	fmt.Fprintf(&b, "  linux %s %s\n", grubURL(assetURL(n.data.ServerURL, p.Boot.Kernel, n.facts.MAC)), strings.Join(args, " "))
	if len(p.Boot.Initrd) > 0 {
		var ins []string
		for _, in := range p.Boot.Initrd {
			ins = append(ins, grubURL(assetURL(n.data.ServerURL, in, n.facts.MAC)))
		}
		fmt.Fprintf(&b, "  initrd %s\n", strings.Join(ins, " "))
	}
	b.WriteString("}\n")
	s.served(n, "grub", "profile "+p.Name)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(b.Bytes())
	return http.StatusOK, nil
}

func (s *Server) ignition(w http.ResponseWriter, r *http.Request, n *node) (int, error) {
	if n.match.Profile.Ignition == "" {
		return http.StatusNotFound, fmt.Errorf("profile %s has no Ignition config (no ignition: key)", n.match.Profile.Name)
	}
	start := time.Now()
	cfg, warnings, err := n.snap.Renderer.Ignition(n.match, n.data)
	s.metrics.renderIgnition.Observe(time.Since(start).Seconds())
	if err != nil {
		return http.StatusInternalServerError, err
	}
	for _, warn := range warnings {
		s.log.Debug("ignition warning", "mac", n.facts.MAC, "warning", warn)
	}
	s.served(n, "ignition", fmt.Sprintf("%d bytes", len(cfg)))
	if n.nextBoot {
		s.cfg.ClearNextBoot(n.facts.MAC)
	}
	w.Header().Set("Content-Type", "application/vnd.coreos.ignition+json")
	w.Write(cfg)
	return http.StatusOK, nil
}

func (s *Server) cloudConfig(w http.ResponseWriter, r *http.Request, n *node) (int, error) {
	if n.match.Profile.CloudConfig == "" {
		return http.StatusNotFound, fmt.Errorf("profile %s has no cloud-config (no cloud_config: key)", n.match.Profile.Name)
	}
	start := time.Now()
	out, err := n.snap.Renderer.CloudConfig(n.match, n.data)
	s.metrics.renderCloud.Observe(time.Since(start).Seconds())
	if err != nil {
		return http.StatusInternalServerError, err
	}
	s.served(n, "cloud-config", fmt.Sprintf("%d bytes", len(out)))
	if n.nextBoot {
		s.cfg.ClearNextBoot(n.facts.MAC)
	}
	w.Header().Set("Content-Type", "text/cloud-config; charset=utf-8")
	w.Write(out)
	return http.StatusOK, nil
}

// metadata answers KEY=value lines (facts, then the group's metadata
// flattened with nested keys joined by "_"), or JSON with ?format=json.
func (s *Server) metadata(w http.ResponseWriter, r *http.Request, n *node) (int, error) {
	d := n.data
	if r.URL.Query().Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return http.StatusOK, enc.Encode(map[string]any{
			"mac": d.MAC, "ip": d.IP, "uuid": d.UUID, "arch": d.Arch, "firmware": n.facts.Firmware,
			"hostname": d.Hostname, "group": d.Group, "profile": d.Profile, "metadata": d.Metadata,
		})
	}
	lines := map[string]string{
		"MAC": d.MAC, "IP": d.IP, "UUID": d.UUID, "ARCH": d.Arch, "FIRMWARE": n.facts.Firmware,
		"HOSTNAME": d.Hostname, "GROUP": d.Group, "PROFILE": d.Profile, "SERVER_URL": d.ServerURL,
	}
	flatten("", d.Metadata, func(k, v string) {
		if _, fact := lines[k]; !fact { // facts win over metadata keys
			lines[k] = v
		}
	})
	keys := make([]string, 0, len(lines))
	for k := range lines {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, k := range keys {
		fmt.Fprintf(w, "%s=%s\n", k, strings.ReplaceAll(lines[k], "\n", `\n`))
	}
	return http.StatusOK, nil
}

func flatten(prefix string, v any, emit func(k, v string)) {
	key := func(k string) string {
		k = strings.ToUpper(strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
				return r
			}
			return '_'
		}, k))
		if prefix == "" {
			return k
		}
		return prefix + "_" + k
	}
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			flatten(key(k), val, emit)
		}
	case []any:
		for i, val := range x {
			flatten(key(fmt.Sprint(i)), val, emit)
		}
	case nil:
		if prefix != "" {
			emit(prefix, "")
		}
	default:
		if prefix != "" {
			emit(prefix, fmt.Sprint(x))
		}
	}
}

func (s *Server) served(n *node, kind, detail string) {
	if n.nextBoot {
		detail += " (next boot)"
	}
	s.emit(Event{MAC: n.facts.MAC, IP: n.data.IP, Arch: n.facts.Arch, Firmware: n.facts.Firmware, UUID: n.facts.UUID,
		Group: n.match.Group.Name, Profile: n.match.Profile.Name, Kind: kind, Detail: detail})
}

// PreviewIgnition renders the Ignition config that GET /ignition would
// serve for the facts in r's query (mac, arch, firmware, uuid, hostname),
// without recording a boot step or clearing a next boot: for the admin's
// dashboard. The config holds the node's agent token; callers must check
// the admin token first.
func (s *Server) PreviewIgnition(r *http.Request) ([]byte, error) {
	n, err := s.resolve(r)
	if err != nil {
		return nil, err
	}
	if n.match.Profile.Ignition == "" {
		return nil, fmt.Errorf("profile %s has no Ignition config (no ignition: key)", n.match.Profile.Name)
	}
	cfg, _, err := n.snap.Renderer.Ignition(n.match, n.data)
	if err != nil {
		return nil, fmt.Errorf("render ignition for %s: %w", n.facts.MAC, err)
	}
	return cfg, nil
}
