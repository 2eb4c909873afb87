// Package agent is the bootfleet node agent: it joins its server with the
// node's token, heartbeats, and reconciles the containers assigned to its
// node through the Docker Engine API (dockerd or podman's compatible
// service). It imports only the standard library, so the agent binary stays
// small; the server imports this package for the wire types below.
package agent

import "time"

// Container labels: the agent only ever touches containers that carry
// LabelNode with its own MAC.
const (
	LabelNode    = "io.bootfleet.node"
	LabelUnit    = "io.bootfleet.unit"
	LabelReplica = "io.bootfleet.replica"
	LabelHash    = "io.bootfleet.hash"
)

// Facts describe the node, reported when the agent joins.
type Facts struct {
	Hostname       string `json:"hostname,omitempty"`
	OS             string `json:"os,omitempty"`
	Kernel         string `json:"kernel,omitempty"`
	Arch           string `json:"arch,omitempty"`
	CPUs           int    `json:"cpus,omitempty"`
	MemoryBytes    int64  `json:"memory_bytes,omitempty"`
	Runtime        string `json:"runtime,omitempty"`
	RuntimeVersion string `json:"runtime_version,omitempty"`
	AgentVersion   string `json:"agent_version,omitempty"`
	// RuntimeError says why the container runtime did not answer, if so.
	RuntimeError string `json:"runtime_error,omitempty"`
}

// JoinRequest is the body of POST /api/v1/agent/{mac}/join.
type JoinRequest struct {
	Facts Facts `json:"facts"`
}

// JoinResponse tells the agent how often to heartbeat.
type JoinResponse struct {
	HeartbeatInterval Duration `json:"heartbeat_interval"`
	NodeTTL           Duration `json:"node_ttl"`
}

// ContainerStatus is one of the node's unit containers as the agent sees
// it, with its resource use (what cAdvisor would show).
type ContainerStatus struct {
	Unit        string  `json:"unit"`
	Replica     int     `json:"replica"`
	Name        string  `json:"name"`
	ID          string  `json:"id,omitempty"`
	Image       string  `json:"image,omitempty"`
	Hash        string  `json:"hash,omitempty"`
	State       string  `json:"state"` // created, running, exited, pulling, failed …
	Error       string  `json:"error,omitempty"`
	Restarts    int     `json:"restarts,omitempty"`
	CPUPercent  float64 `json:"cpu_percent"`
	MemoryBytes int64   `json:"memory_bytes"`
	NetRxBytes  int64   `json:"net_rx_bytes"`
	NetTxBytes  int64   `json:"net_tx_bytes"`
}

// Heartbeat is the body of POST /api/v1/agent/{mac}/heartbeat.
type Heartbeat struct {
	Containers []ContainerStatus `json:"containers"`
}

// Assignment is one replica of a unit the node must run.
type Assignment struct {
	Unit        string            `json:"unit"`
	Replica     int               `json:"replica"`
	Hash        string            `json:"hash"`
	Image       string            `json:"image"`
	Command     []string          `json:"command,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	MemoryBytes int64             `json:"memory_bytes,omitempty"`
	CPUs        float64           `json:"cpus,omitempty"`
}

// LogRequest asks the agent for the tail of a unit container's logs.
type LogRequest struct {
	ID      string `json:"id"`
	Unit    string `json:"unit"`
	Replica int    `json:"replica"`
	Tail    int    `json:"tail"`
}

// LogUpload is the body of POST /api/v1/agent/{mac}/logs/{id}.
type LogUpload struct {
	Container string `json:"container,omitempty"`
	Logs      string `json:"logs"`
	Error     string `json:"error,omitempty"`
}

// Orders is what the server wants of the node: the answer to a heartbeat
// and to a poll. Generation changes whenever Assignments change.
type Orders struct {
	Generation  string       `json:"generation"`
	Assignments []Assignment `json:"assignments"`
	LogRequests []LogRequest `json:"log_requests,omitempty"`
}

// Duration is a time.Duration that travels as a string ("3s").
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}
