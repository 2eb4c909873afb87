package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// dockerAPIVersion is the Engine API version the agent speaks; dockerd
// 20.10+ and podman 4+ both serve it.
const dockerAPIVersion = "v1.41"

// Docker is a small client of the Docker Engine API: just the calls the
// agent needs, over a unix socket (or tcp), with no dependency.
type Docker struct {
	hc   *http.Client
	base string
}

// errNotFound is the Engine's 404 (no such container or image).
var errNotFound = errors.New("not found")

// NewDocker returns a client for host: unix:///path/to.sock or tcp://h:p.
func NewDocker(host string) (*Docker, error) {
	u, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("docker host %q: %w", host, err)
	}
	tr := &http.Transport{MaxIdleConns: 4, IdleConnTimeout: 30 * time.Second}
	base := "http://docker/" + dockerAPIVersion
	switch u.Scheme {
	case "unix":
		sock := u.Path
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}
	case "tcp", "http":
		base = "http://" + u.Host + "/" + dockerAPIVersion
	default:
		return nil, fmt.Errorf("docker host %q: want unix:///path or tcp://host:port", host)
	}
	return &Docker{hc: &http.Client{Transport: tr}, base: base}, nil
}

// do sends one call; a status of 400 or more becomes an error carrying the
// Engine's message.
func (d *Docker) do(ctx context.Context, method, path string, query url.Values, body io.Reader, contentType string) (*http.Response, error) {
	u := d.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("docker %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var msg struct {
			Message string `json:"message"`
		}
		text := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &msg) == nil && msg.Message != "" {
			text = msg.Message
		}
		if resp.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("docker %s %s: %s: %w", method, path, text, errNotFound)
		}
		return nil, fmt.Errorf("docker %s %s: %d %s", method, path, resp.StatusCode, text)
	}
	return resp, nil
}

func (d *Docker) getJSON(ctx context.Context, path string, query url.Values, v any) error {
	resp, err := d.do(ctx, http.MethodGet, path, query, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

func (d *Docker) post(ctx context.Context, path string, query url.Values, in, out any) error {
	var body io.Reader
	ct := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	resp, err := d.do(ctx, http.MethodPost, path, query, body, ct)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// Version is the Engine's name and version.
type Version struct {
	Version    string `json:"Version"`
	APIVersion string `json:"ApiVersion"`
	Components []struct {
		Name string `json:"Name"`
	} `json:"Components"`
}

// Version asks the Engine who it is.
func (d *Docker) Version(ctx context.Context) (Version, error) {
	var v Version
	err := d.getJSON(ctx, "/version", nil, &v)
	return v, err
}

// Container is an entry of the container list.
type Container struct {
	ID     string            `json:"Id"`
	Names  []string          `json:"Names"`
	Image  string            `json:"Image"`
	State  string            `json:"State"`
	Status string            `json:"Status"`
	Labels map[string]string `json:"Labels"`
}

// Name is the container's name without the leading slash.
func (c Container) Name() string {
	if len(c.Names) == 0 {
		return ""
	}
	return strings.TrimPrefix(c.Names[0], "/")
}

// Containers lists all containers (running or not) with the label k=v.
func (d *Docker) Containers(ctx context.Context, label string) ([]Container, error) {
	filters, _ := json.Marshal(map[string][]string{"label": {label}})
	var out []Container
	err := d.getJSON(ctx, "/containers/json", url.Values{"all": {"1"}, "filters": {string(filters)}}, &out)
	return out, err
}

// ContainerSpec is what CreateContainer makes.
type ContainerSpec struct {
	Name        string
	Image       string
	Cmd         []string
	Env         []string
	Labels      map[string]string
	MemoryBytes int64
	CPUs        float64
}

// CreateContainer creates a container that the Engine restarts when it
// fails, and returns its ID.
func (d *Docker) CreateContainer(ctx context.Context, s ContainerSpec) (string, error) {
	type restart struct {
		Name              string
		MaximumRetryCount int
	}
	body := map[string]any{
		"Image":  s.Image,
		"Env":    s.Env,
		"Labels": s.Labels,
		"HostConfig": map[string]any{
			"RestartPolicy": restart{Name: "on-failure"},
			"Memory":        s.MemoryBytes,
			"NanoCpus":      int64(s.CPUs * 1e9),
			"LogConfig":     map[string]any{"Type": "k8s-file"},
		},
	}
	if len(s.Cmd) > 0 {
		body["Cmd"] = s.Cmd
	}
	var out struct {
		ID string `json:"Id"`
	}
	if err := d.post(ctx, "/containers/create", url.Values{"name": {s.Name}}, body, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}

// StartContainer starts a created or stopped container.
func (d *Docker) StartContainer(ctx context.Context, id string) error {
	return d.post(ctx, "/containers/"+url.PathEscape(id)+"/start", nil, nil, nil)
}

// RemoveContainer stops (with a grace period) and removes a container.
func (d *Docker) RemoveContainer(ctx context.Context, id string, grace time.Duration) error {
	// A stop that fails (already stopped, say) still ends in the forced
	// removal below.
	_ = d.post(ctx, "/containers/"+url.PathEscape(id)+"/stop", url.Values{"t": {strconv.Itoa(int(grace.Seconds()))}}, nil, nil)
	resp, err := d.do(ctx, http.MethodDelete, "/containers/"+url.PathEscape(id), url.Values{"force": {"1"}, "v": {"1"}}, nil, "")
	if err != nil {
		if errors.Is(err, errNotFound) {
			return nil
		}
		return err
	}
	resp.Body.Close()
	return nil
}

// Inspect is the part of a container's details the agent reads.
type Inspect struct {
	RestartCount int `json:"RestartCount"`
	State        struct {
		Status   string `json:"Status"`
		ExitCode int    `json:"ExitCode"`
		Error    string `json:"Error"`
	} `json:"State"`
}

// InspectContainer returns a container's state and restart count.
func (d *Docker) InspectContainer(ctx context.Context, id string) (Inspect, error) {
	var in Inspect
	err := d.getJSON(ctx, "/containers/"+url.PathEscape(id)+"/json", nil, &in)
	return in, err
}

// Logs returns the last tail lines of a container's stdout and stderr.
func (d *Docker) Logs(ctx context.Context, id string, tail int) (string, error) {
	q := url.Values{"stdout": {"1"}, "stderr": {"1"}, "tail": {strconv.Itoa(tail)}}
	resp, err := d.do(ctx, http.MethodGet, "/containers/"+url.PathEscape(id)+"/logs", q, nil, "")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	return demuxLogs(io.LimitReader(resp.Body, 1<<20))
}

// demuxLogs reads the Engine's multiplexed log stream (8-byte frame
// headers) into plain text; a stream without headers (a TTY container) is
// returned as is.
func demuxLogs(r io.Reader) (string, error) {
	br := bufio.NewReader(r)
	var out strings.Builder
	for {
		hdr, err := br.Peek(8)
		if len(hdr) == 0 && err != nil {
			if errors.Is(err, io.EOF) {
				return out.String(), nil
			}
			return out.String(), err
		}
		if len(hdr) < 8 || hdr[0] > 2 || hdr[1] != 0 || hdr[2] != 0 || hdr[3] != 0 {
			rest, err := io.ReadAll(br) // not multiplexed
			out.Write(rest)
			return out.String(), err
		}
		size := binary.BigEndian.Uint32(hdr[4:8])
		if _, err := br.Discard(8); err != nil {
			return out.String(), err
		}
		if _, err := io.CopyN(&out, br, int64(size)); err != nil {
			if errors.Is(err, io.EOF) {
				return out.String(), nil
			}
			return out.String(), err
		}
	}
}

// Stats is one sample of a container's resource use.
type Stats struct {
	CPUTotal    uint64 // nanoseconds of CPU used so far
	SystemTotal uint64 // nanoseconds of system CPU time so far
	OnlineCPUs  int
	MemoryBytes int64
	NetRxBytes  int64
	NetTxBytes  int64
}

// Stats takes one sample of a container's CPU, memory and network use.
func (d *Docker) Stats(ctx context.Context, id string) (Stats, error) {
	var raw struct {
		CPUStats struct {
			CPUUsage struct {
				TotalUsage uint64 `json:"total_usage"`
			} `json:"cpu_usage"`
			SystemCPUUsage uint64 `json:"system_cpu_usage"`
			OnlineCPUs     int    `json:"online_cpus"`
		} `json:"cpu_stats"`
		MemoryStats struct {
			Usage int64 `json:"usage"`
		} `json:"memory_stats"`
		Networks map[string]struct {
			RxBytes int64 `json:"rx_bytes"`
			TxBytes int64 `json:"tx_bytes"`
		} `json:"networks"`
	}
	if err := d.getJSON(ctx, "/containers/"+url.PathEscape(id)+"/stats", url.Values{"stream": {"false"}, "one-shot": {"true"}}, &raw); err != nil {
		return Stats{}, err
	}
	s := Stats{
		CPUTotal:    raw.CPUStats.CPUUsage.TotalUsage,
		SystemTotal: raw.CPUStats.SystemCPUUsage,
		OnlineCPUs:  raw.CPUStats.OnlineCPUs,
		MemoryBytes: raw.MemoryStats.Usage,
	}
	for _, n := range raw.Networks {
		s.NetRxBytes += n.RxBytes
		s.NetTxBytes += n.TxBytes
	}
	return s, nil
}

// ImageExists says whether the Engine has the image.
func (d *Docker) ImageExists(ctx context.Context, ref string) (bool, error) {
	var v struct {
		ID string `json:"Id"`
	}
	err := d.getJSON(ctx, "/images/"+ref+"/json", nil, &v)
	if errors.Is(err, errNotFound) {
		return false, nil
	}
	return err == nil, err
}

// PullImage pulls an image from its registry.
func (d *Docker) PullImage(ctx context.Context, ref string) error {
	name, tag := splitRef(ref)
	resp, err := d.do(ctx, http.MethodPost, "/images/create", url.Values{"fromImage": {name}, "tag": {tag}}, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Progress messages; an error arrives as {"error": "..."} in the stream.
	dec := json.NewDecoder(resp.Body)
	for {
		var m struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("pull %s: %w", ref, err)
		}
		if m.Error != "" {
			return fmt.Errorf("pull %s: %s", ref, m.Error)
		}
	}
}

// LoadImage loads an image archive (docker save format, optionally
// compressed) into the Engine.
func (d *Docker) LoadImage(ctx context.Context, archive io.Reader) error {
	resp, err := d.do(ctx, http.MethodPost, "/images/load", url.Values{"quiet": {"1"}}, archive, "application/x-tar")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if bytes.Contains(b, []byte(`"error"`)) {
		return fmt.Errorf("load image: %s", strings.TrimSpace(string(b)))
	}
	return nil
}

// splitRef splits name:tag (a registry port's colon is not a tag).
func splitRef(ref string) (name, tag string) {
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		return ref[:i], ref[i+1:]
	}
	return ref, "latest"
}
