package ignition

import (
	"fmt"

	"github.com/bootfleet/bootfleet/profiles"
)

// Where the agent lands on a node. /opt is writable on Flatcar and Fedora
// CoreOS, whose /usr is read-only.
const (
	AgentEnvPath    = "/etc/bootfleet/agent.env"
	AgentBinaryPath = "/opt/bootfleet/bin/bootfleet-agent"
	AgentUnitName   = "bootfleet-agent.service"
)

// AgentInjector adds the node agent to every Ignition config: its env
// file (server URL, the node's MAC and its token), its binary fetched from
// the server, and a systemd unit that runs it. Nodes without an agent token
// (no fleet) get nothing.
func AgentInjector() Injector {
	return func(d profiles.TemplateData) (Addition, error) {
		if d.AgentToken == "" || d.AgentURL == "" {
			return Addition{}, nil
		}
		env := fmt.Sprintf("BOOTFLEET_SERVER=%s\nBOOTFLEET_NODE=%s\nBOOTFLEET_TOKEN=%s\n", d.ServerURL, d.MAC, d.AgentToken)
		unit := `[Unit]
Description=bootfleet node agent
Documentation=https://github.com/bootfleet/bootfleet
Wants=network-online.target
After=network-online.target docker.service podman.socket

[Service]
ExecStart=` + AgentBinaryPath + ` --env-file ` + AgentEnvPath + `
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
`
		return Addition{
			Files: []File{
				{Path: AgentEnvPath, Mode: 0o600, Contents: []byte(env)},
				{Path: AgentBinaryPath, Mode: 0o755, Source: d.AgentURL},
			},
			Units: []Unit{{Name: AgentUnitName, Contents: unit}},
		}, nil
	}
}
