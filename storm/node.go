package storm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/bootfleet/bootfleet/agent"
)

// machine is one simulated machine's state while it boots.
type machine struct {
	s     *storm
	mac   net.HardwareAddr
	fw    firmware
	start time.Time
	ready bool // its agent joined
	// firmwareHTTP is iPXE's connection pool, osHTTP the booted system's.
	firmwareHTTP, osHTTP *http.Client
}

func newTransport() *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		DisableCompression:  true, // neither iPXE nor Ignition asks for gzip
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     time.Minute,
	}
}

// node runs machine i from power-on to its last heartbeat.
func (s *storm) node(ctx context.Context, i int) {
	m := &machine{s: s, mac: s.cfg.MAC(i), fw: s.cfg.firmware(i), start: time.Now(),
		firmwareHTTP: &http.Client{Transport: newTransport(), Timeout: s.cfg.RequestTimeout},
		osHTTP:       &http.Client{Transport: newTransport(), Timeout: s.cfg.RequestTimeout}}
	defer m.firmwareHTTP.CloseIdleConnections()
	defer m.osHTTP.CloseIdleConnections()
	err := m.boot(ctx)
	if err != nil && !m.ready { // a ready machine already counts as one
		s.phases[PhaseNode].add(0, 0, 0, err)
	}
	if err != nil {
		s.cfg.Log.Debug("machine failed", "mac", m.mac, "error", err)
	}
}

// timed runs f as one sample of the named phase.
func (m *machine) timed(name string, f func() (bytes int64, retries int, err error)) error {
	t := time.Now()
	n, r, err := f()
	if err != nil {
		err = fmt.Errorf("%s: %w", name, err)
	}
	m.s.phases[name].add(time.Since(t), n, r, err)
	return err
}

func (m *machine) boot(ctx context.Context) error {
	cfg := m.s.cfg
	bootURL := cfg.Server + "/boot.ipxe"
	if m.fw != ipxeROM {
		bootFile := "undionly.kpxe"
		if m.fw == pxeUEFI {
			bootFile = "ipxe.efi"
		}
		if m.s.dhcp != nil {
			var l lease
			if err := m.timed(PhaseDHCPPXE, func() (int64, int, error) {
				var err error
				l, err = m.s.dhcp.dora(ctx, m.mac, client{arch: m.fw.arch()})
				return 0, l.Retries, err
			}); err != nil {
				return err
			}
			if l.BootFile != bootFile {
				err := fmt.Errorf("%s: boot file %q, want %q for %v", PhaseDHCPPXE, l.BootFile, bootFile, m.fw.arch())
				m.s.phases[PhaseDHCPPXE].add(0, 0, 0, err)
				return err
			}
		}
		if err := m.timed(PhaseTFTP, func() (int64, int, error) { return m.tftp(bootFile) }); err != nil {
			return err
		}
	}
	if m.s.dhcp != nil {
		var l lease
		if err := m.timed(PhaseDHCPIPXE, func() (int64, int, error) {
			var err error
			l, err = m.s.dhcp.dora(ctx, m.mac, client{arch: m.fw.arch(), ipxe: true})
			return 0, l.Retries, err
		}); err != nil {
			return err
		}
		if !strings.HasPrefix(l.BootFile, "http") {
			err := fmt.Errorf("%s: boot file %q for iPXE is no URL", PhaseDHCPIPXE, l.BootFile)
			m.s.phases[PhaseDHCPIPXE].add(0, 0, 0, err)
			return err
		}
		bootURL = l.BootFile
	}

	// iPXE: the boot script chains the machine's own script.
	var script []byte
	if err := m.timed(PhaseBootScript, func() (int64, int, error) {
		var err error
		script, err = m.get(ctx, m.firmwareHTTP, bootURL, io.Discard)
		return 0, 0, err
	}); err != nil {
		return err
	}
	chain, err := m.chainURL(script)
	if err != nil {
		m.s.phases[PhaseBootScript].add(0, 0, 0, err)
		return err
	}
	if err := m.timed(PhaseIPXEScript, func() (int64, int, error) {
		var err error
		script, err = m.get(ctx, m.firmwareHTTP, chain, io.Discard)
		return 0, 0, err
	}); err != nil {
		return err
	}
	kernel, initrds, ignitionURL, err := parseIPXE(script)
	if err != nil {
		err = fmt.Errorf("%s: %w", PhaseIPXEScript, err)
		m.s.phases[PhaseIPXEScript].add(0, 0, 0, err)
		return err
	}
	if err := m.timed(PhaseKernel, func() (int64, int, error) { return m.download(ctx, m.firmwareHTTP, kernel) }); err != nil {
		return err
	}
	for _, in := range initrds {
		if err := m.timed(PhaseInitrd, func() (int64, int, error) { return m.download(ctx, m.firmwareHTTP, in) }); err != nil {
			return err
		}
	}
	m.firmwareHTTP.CloseIdleConnections() // the kernel takes over
	if cfg.BootDelay > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(cfg.BootDelay):
		}
	}

	// The booted system: Ignition, the files it names, the agent.
	if ignitionURL == "" {
		return fmt.Errorf("%s: the kernel args carry no ignition.config.url", PhaseIPXEScript)
	}
	var ign []byte
	if err := m.timed(PhaseIgnition, func() (int64, int, error) {
		var err error
		ign, err = m.get(ctx, m.osHTTP, ignitionURL, io.Discard)
		return 0, 0, err
	}); err != nil {
		return err
	}
	env, remote, err := parseIgnition(ign)
	if err != nil {
		err = fmt.Errorf("%s: %w", PhaseIgnition, err)
		m.s.phases[PhaseIgnition].add(0, 0, 0, err)
		return err
	}
	for _, src := range remote {
		if err := m.timed(PhaseAgentBinary, func() (int64, int, error) { return m.download(ctx, m.osHTTP, src) }); err != nil {
			return err
		}
	}
	server, node, token := env["BOOTFLEET_SERVER"], env["BOOTFLEET_NODE"], env["BOOTFLEET_TOKEN"]
	if server == "" || node == "" || token == "" {
		err := fmt.Errorf("%s: no agent env (BOOTFLEET_SERVER, _NODE, _TOKEN) in the Ignition config: is the agent binary in the server's --agent-dir?", PhaseIgnition)
		m.s.phases[PhaseIgnition].add(0, 0, 0, err)
		return err
	}
	agentURL := strings.TrimSuffix(server, "/") + "/api/v1/agent/" + url.PathEscape(node)
	// The agent joins again after a failure, with the backoff of
	// agent.Run (0.5 s doubling, with jitter); each failed try counts.
	var joined agent.JoinResponse
	facts := agent.Facts{Hostname: "storm-" + strings.ReplaceAll(m.mac.String(), ":", ""), OS: "storm", Arch: "x86_64",
		CPUs: 2, MemoryBytes: 4 << 30, AgentVersion: "storm", Runtime: "none"}
	backoff := 500 * time.Millisecond
	for try := 1; ; try++ {
		err := m.timed(PhaseJoin, func() (int64, int, error) {
			return 0, 0, m.post(ctx, agentURL+"/join", token, agent.JoinRequest{Facts: facts}, &joined)
		})
		if err == nil {
			break
		}
		if try >= cfg.JoinTries {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff + rand.N(backoff/2+1)):
		}
		backoff = min(backoff*2, 8*time.Second)
	}
	now := time.Now()
	m.s.phases[PhaseNode].add(now.Sub(m.start), 0, 0, nil)
	m.ready = true
	m.s.ready.Add(1)
	for {
		last := m.s.lastJoin.Load()
		if now.UnixNano() <= last || m.s.lastJoin.CompareAndSwap(last, now.UnixNano()) {
			break
		}
	}

	interval := time.Duration(joined.HeartbeatInterval)
	if cfg.HeartbeatInterval > 0 {
		interval = cfg.HeartbeatInterval
	}
	for range cfg.Heartbeats {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
		var orders json.RawMessage
		if err := m.timed(PhaseHeartbeat, func() (int64, int, error) {
			return 0, 0, m.post(ctx, agentURL+"/heartbeat", token, agent.Heartbeat{Containers: []agent.ContainerStatus{}}, &orders)
		}); err != nil {
			return err
		}
	}
	m.s.complete.Add(1)
	return nil
}

// get fetches a URL whole; small bodies are returned, a body beyond 1 MiB
// goes to sink.
func (m *machine) get(ctx context.Context, c *http.Client, u string, sink io.Writer) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return b, nil
}

// download fetches a URL to nowhere, checking its length.
func (m *machine) download(ctx context.Context, c *http.Client, u string) (int64, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	n, err := discard(m.s.bufs, resp.Body)
	if err != nil {
		return n, 0, fmt.Errorf("GET %s: after %d bytes: %w", u, n, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, 0, fmt.Errorf("GET %s: %d bytes of %d", u, n, resp.ContentLength)
	}
	return n, 0, nil
}

func (m *machine) post(ctx context.Context, u, token string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := m.osHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("POST %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("POST %s: %w", u, err)
	}
	return nil
}

// tftp fetches the iPXE binary as PXE firmware does (blksize 1432, the
// common firmware choice, with the transfer size asked).
func (m *machine) tftp(name string) (int64, int, error) {
	c, err := tftp.NewClient(m.s.cfg.TFTP)
	if err != nil {
		return 0, 0, err
	}
	c.SetBlockSize(1432)
	c.RequestTSize(true)
	c.SetTimeout(m.s.cfg.TFTPTimeout)
	c.SetRetries(m.s.cfg.TFTPRetries)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return 0, 0, err
	}
	n, err := wt.WriteTo(io.Discard)
	if err != nil {
		return n, 0, fmt.Errorf("%s after %d bytes: %w", name, n, err)
	}
	if want, ok := wt.(tftp.IncomingTransfer).Size(); ok && want != n {
		return n, 0, fmt.Errorf("%s: %d bytes of %d", name, n, want)
	}
	return n, 0, nil
}

// chainURL finds the chain command of /boot.ipxe and fills in the iPXE
// settings it uses, as iPXE would for this machine.
func (m *machine) chainURL(script []byte) (string, error) {
	fw, arch := "bios", "x86_64"
	if m.fw == pxeUEFI {
		fw = "efi"
	}
	uuid := fmt.Sprintf("00000000-0000-0000-0000-%s", strings.ReplaceAll(m.mac.String(), ":", ""))
	r := strings.NewReplacer("${mac:hexhyp}", strings.ReplaceAll(m.mac.String(), ":", "-"), "${mac}", m.mac.String(),
		"${buildarch}", arch, "${bootfleet_fw}", map[string]string{"bios": "bios", "efi": "uefi"}[fw], "${uuid}", uuid)
	sc := bufio.NewScanner(bytes.NewReader(script))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && f[0] == "chain" {
			for _, a := range f[1:] {
				if strings.HasPrefix(a, "http://") || strings.HasPrefix(a, "https://") {
					return r.Replace(a), nil
				}
			}
		}
	}
	return "", fmt.Errorf("%s: no chain URL in the boot script:\n%s", PhaseBootScript, script)
}

// parseIPXE reads a machine's iPXE script: the kernel URL, the initrd
// URLs and the Ignition URL among the kernel args.
func parseIPXE(script []byte) (kernel string, initrds []string, ignition string, err error) {
	sc := bufio.NewScanner(bytes.NewReader(script))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "kernel":
			kernel = f[1]
			for _, a := range f[2:] {
				if v, ok := strings.CutPrefix(a, "ignition.config.url="); ok {
					ignition = v
				}
			}
		case "initrd":
			for _, a := range f[1:] {
				if strings.HasPrefix(a, "http://") || strings.HasPrefix(a, "https://") {
					initrds = append(initrds, a)
				}
			}
		}
	}
	if kernel == "" {
		return "", nil, "", fmt.Errorf("no kernel in the script:\n%s", script)
	}
	return kernel, initrds, ignition, nil
}

// parseIgnition returns the agent env the config writes and the remote
// sources of its files (what Ignition downloads).
func parseIgnition(b []byte) (env map[string]string, remote []string, err error) {
	var cfg struct {
		Storage struct {
			Files []struct {
				Path     string `json:"path"`
				Contents struct {
					Source      string `json:"source"`
					Compression string `json:"compression"`
				} `json:"contents"`
			} `json:"files"`
		} `json:"storage"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, nil, fmt.Errorf("config is not JSON: %w", err)
	}
	env = map[string]string{}
	for _, f := range cfg.Storage.Files {
		src := f.Contents.Source
		switch {
		case strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://"):
			remote = append(remote, src)
		case path.Base(f.Path) == "agent.env" && strings.HasPrefix(src, "data:"):
			if f.Contents.Compression != "" {
				return nil, nil, fmt.Errorf("%s: compressed (%s) contents", f.Path, f.Contents.Compression)
			}
			data, err := decodeDataURL(src)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", f.Path, err)
			}
			for _, line := range strings.Split(string(data), "\n") {
				if k, v, ok := strings.Cut(line, "="); ok {
					env[k] = v
				}
			}
		}
	}
	return env, remote, nil
}

func decodeDataURL(src string) ([]byte, error) {
	meta, data, ok := strings.Cut(strings.TrimPrefix(src, "data:"), ",")
	if !ok {
		return nil, errors.New("data URL without a comma")
	}
	if strings.HasSuffix(meta, ";base64") {
		return base64.StdEncoding.DecodeString(data)
	}
	s, err := url.PathUnescape(data)
	return []byte(s), err
}

// newBufferPool holds the buffers downloads read into: large reads keep
// the simulator's own CPU (it shares the machine with the server) low.
func newBufferPool() *sync.Pool {
	return &sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}
}

// discard reads r to its end into a buffer of bufs, returning the bytes read.
func discard(bufs *sync.Pool, r io.Reader) (int64, error) {
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	var n int64
	for {
		k, err := r.Read(*bp)
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
