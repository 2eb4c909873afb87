package storm

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Phases of one machine's boot, in order. A machine does the ones its
// firmware calls for: PXE firmware does dhcp-pxe and tftp first, a machine
// whose ROM is iPXE starts at dhcp-ipxe.
const (
	PhaseDHCPPXE     = "dhcp-pxe"     // DORA as PXE firmware (option 93, vendor class PXEClient)
	PhaseTFTP        = "tftp"         // the iPXE binary the boot file names
	PhaseDHCPIPXE    = "dhcp-ipxe"    // DORA as iPXE (user class iPXE)
	PhaseBootScript  = "boot.ipxe"    // the boot file URL
	PhaseIPXEScript  = "ipxe"         // /ipxe?mac=…, the machine's own script
	PhaseKernel      = "kernel"       // the kernel the script names
	PhaseInitrd      = "initrd"       // each initrd the script names
	PhaseIgnition    = "ignition"     // ignition.config.url from the kernel args
	PhaseAgentBinary = "agent-binary" // the files Ignition fetches (the agent)
	PhaseJoin        = "join"         // the agent's join with the node's token
	PhaseHeartbeat   = "heartbeat"    // the agent's heartbeats
	PhaseNode        = "node"         // a whole machine: first packet to join
)

// PhaseOrder lists the phases as a report shows them.
var PhaseOrder = []string{PhaseDHCPPXE, PhaseTFTP, PhaseDHCPIPXE, PhaseBootScript, PhaseIPXEScript, PhaseKernel, PhaseInitrd,
	PhaseIgnition, PhaseAgentBinary, PhaseJoin, PhaseHeartbeat, PhaseNode}

// phase gathers one phase's samples; it is safe for concurrent use.
type phase struct {
	mu       sync.Mutex
	h        *hdr.Histogram // microseconds
	count    int64
	failures int64
	bytes    int64
	retries  int64
	errs     map[string]int
}

func newPhase() *phase {
	return &phase{h: hdr.New(1, int64(30*time.Minute/time.Microsecond), 3), errs: map[string]int{}}
}

func (p *phase) add(d time.Duration, bytes int64, retries int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.count++
	p.bytes += bytes
	p.retries += int64(retries)
	if err != nil {
		p.failures++
		msg := errGroup(err.Error())
		if _, ok := p.errs[msg]; ok || len(p.errs) < 20 {
			p.errs[msg]++
		}
		return
	}
	_ = p.h.RecordValue(max(1, d.Microseconds()))
}

// PhaseStats is one phase of a report. Latencies are of successful runs.
type PhaseStats struct {
	Name     string         `json:"name"`
	Count    int64          `json:"count"`
	Failures int64          `json:"failures"`
	Retries  int64          `json:"retries,omitempty"` // DHCP retransmissions
	Bytes    int64          `json:"bytes,omitempty"`
	P50ms    float64        `json:"p50_ms"`
	P95ms    float64        `json:"p95_ms"`
	P99ms    float64        `json:"p99_ms"`
	Maxms    float64        `json:"max_ms"`
	Errors   map[string]int `json:"errors,omitempty"`
}

func (p *phase) stats(name string) PhaseStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	ms := func(q float64) float64 { return float64(p.h.ValueAtQuantile(q)) / 1000 }
	s := PhaseStats{Name: name, Count: p.count, Failures: p.failures, Retries: p.retries, Bytes: p.bytes,
		P50ms: ms(50), P95ms: ms(95), P99ms: ms(99), Maxms: float64(p.h.Max()) / 1000}
	if len(p.errs) > 0 {
		s.Errors = maps(p.errs)
	}
	return s
}

var (
	macPattern  = regexp.MustCompile(`(?i)\b[0-9a-f]{2}(:[0-9a-f]{2}){5}\b`)
	portPattern = regexp.MustCompile(`:\d{2,5}\b`)
	spaces      = regexp.MustCompile(`\s+`)
)

// errGroup makes machines' errors that differ only by MAC or port one
// line of the report.
func errGroup(msg string) string {
	msg = macPattern.ReplaceAllString(msg, "MAC")
	msg = strings.ReplaceAll(msg, "udp [::]", "udp")
	msg = portPattern.ReplaceAllStringFunc(msg, func(p string) string {
		if p == ":8080" || p == ":69" {
			return p
		}
		return ":PORT"
	})
	return spaces.ReplaceAllString(msg, " ")
}

func maps(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ServerUsage is what the server process used during the storm, sampled
// from /proc.
type ServerUsage struct {
	PID          int     `json:"pid"`
	Samples      int     `json:"samples"`
	CPUSeconds   float64 `json:"cpu_seconds"`     // user + system over the storm
	AvgCPUPct    float64 `json:"avg_cpu_percent"` // of one core
	PeakCPUPct   float64 `json:"peak_cpu_percent"`
	StartRSSMiB  float64 `json:"start_rss_mib"`
	PeakRSSMiB   float64 `json:"peak_rss_mib"`
	EndRSSMiB    float64 `json:"end_rss_mib"`
	PeakThreads  int     `json:"peak_threads"`
	SampleWindow string  `json:"sample_window"`
}

// Rate is the asset download rate of the same client with no storm.
type Rate struct {
	Streams     int     `json:"streams"`
	Bytes       int64   `json:"bytes"`
	Seconds     float64 `json:"seconds"`
	BytesPerSec float64 `json:"bytes_per_second"`
}

// Report is the result of a storm.
type Report struct {
	Nodes      int          `json:"nodes"`
	Arrival    string       `json:"arrival"`
	PXEShare   float64      `json:"pxe_share"`
	Ready      int          `json:"ready"`               // machines whose agent joined
	Complete   int          `json:"complete"`            // ready and every heartbeat answered
	FleetReady float64      `json:"fleet_ready_seconds"` // first packet to the last join
	Total      float64      `json:"total_seconds"`
	HTTPBytes  int64        `json:"http_asset_bytes"` // kernel, initrd and agent bytes over HTTP
	TFTPBytes  int64        `json:"tftp_bytes"`
	Phases     []PhaseStats `json:"phases"`
	Server     *ServerUsage `json:"server,omitempty"`
	Rate       *Rate        `json:"rate,omitempty"`
	// LineSeconds is HTTPBytes at Rate: the time the asset bytes need.
	LineSeconds float64 `json:"line_seconds,omitempty"`
	// Metrics is the server's own view (its /metrics) of what the storm did.
	Metrics []MetricLine `json:"server_metrics,omitempty"`
}

// Phase returns the named phase's stats.
func (r *Report) Phase(name string) (PhaseStats, bool) {
	i := slices.IndexFunc(r.Phases, func(p PhaseStats) bool { return p.Name == name })
	if i < 0 {
		return PhaseStats{}, false
	}
	return r.Phases[i], true
}

// Failures is the number of failed requests over all phases (the node
// phase counts machines, not requests, and is left out).
func (r *Report) Failures() int64 {
	var n int64
	for _, p := range r.Phases {
		if p.Name != PhaseNode {
			n += p.Failures
		}
	}
	return n
}

// WriteMarkdown writes the report as Markdown tables.
func (r *Report) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "%d machines, arrival %s, %.0f%% PXE firmware (TFTP), the rest iPXE ROMs. Ready (agent joined): %d; every heartbeat answered: %d. Failed requests: %d.\n\n",
		r.Nodes, r.Arrival, r.PXEShare*100, r.Ready, r.Complete, r.Failures())
	fmt.Fprintln(w, "| phase | count | failures | p50 ms | p95 ms | p99 ms | max ms | bytes |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, p := range r.Phases {
		extra := ""
		if p.Retries > 0 {
			extra = fmt.Sprintf(" (%d retransmissions)", p.Retries)
		}
		fmt.Fprintf(w, "| %s | %d | %d%s | %.1f | %.1f | %.1f | %.1f | %s |\n", p.Name, p.Count, p.Failures, extra, p.P50ms, p.P95ms, p.P99ms, p.Maxms, human(p.Bytes))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Whole fleet ready in **%.2f s** (first DHCP packet to the last agent join); storm over (heartbeats included) in %.2f s. HTTP asset bytes %s, TFTP bytes %s.\n",
		r.FleetReady, r.Total, human(r.HTTPBytes), human(r.TFTPBytes))
	if r.Rate != nil && r.LineSeconds > 0 {
		verdict := "meets"
		if r.FleetReady > 1.10*r.LineSeconds {
			verdict = "misses"
		}
		fmt.Fprintf(w, "Asset rate of the same client alone (%d streams, %.1f s): %s/s, so the bytes alone need **%.2f s**; the fleet was ready in %.2f× that (%s the target ≤ 1.10×).\n",
			r.Rate.Streams, r.Rate.Seconds, human(int64(r.Rate.BytesPerSec)), r.LineSeconds, r.FleetReady/r.LineSeconds, verdict)
	}
	if s := r.Server; s != nil && s.Samples > 0 {
		fmt.Fprintf(w, "Server process (pid %d, %d samples over %s): CPU %.1f s, avg %.0f%% / peak %.0f%% of one core; RSS %.0f MiB before, peak %.0f MiB, %.0f MiB after; peak threads %d.\n",
			s.PID, s.Samples, s.SampleWindow, s.CPUSeconds, s.AvgCPUPct, s.PeakCPUPct, s.StartRSSMiB, s.PeakRSSMiB, s.EndRSSMiB, s.PeakThreads)
	}
	if len(r.Metrics) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "The server's own /metrics over the storm (difference after − before; quantiles interpolated from its histogram buckets):")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| metric | count | p50 ms | p99 ms |")
		fmt.Fprintln(w, "|---|---|---|---|")
		for _, m := range r.Metrics {
			if m.Histogram {
				above := ""
				if m.P99Above {
					above = "> "
				}
				fmt.Fprintf(w, "| %s | %.0f | %.2f | %s%.2f |\n", m.Name, m.Count, m.P50*1000, above, m.P99*1000)
			} else {
				fmt.Fprintf(w, "| %s | %.0f | | |\n", m.Name, m.Count)
			}
		}
	}
	var errs []string
	for _, p := range r.Phases {
		for e, n := range p.Errors {
			errs = append(errs, fmt.Sprintf("- %s: %d× %s", p.Name, n, e))
		}
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		fmt.Fprintf(w, "\nErrors:\n%s\n", strings.Join(errs, "\n"))
	}
}

func human(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	case b == 0:
		return ""
	}
	return fmt.Sprintf("%d B", b)
}
