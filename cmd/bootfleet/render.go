package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/bootfleet/bootfleet/httpboot"
	"github.com/bootfleet/bootfleet/ignition"
)

// renderPaths maps --kind to the endpoint a node fetches.
var renderPaths = map[string]string{
	"ipxe":         "/ipxe",
	"grub":         "/grub.cfg",
	"ignition":     "/ignition",
	"cloud-config": "/cloud-config",
	"metadata":     "/metadata",
}

func newRenderCmd() *cobra.Command {
	var dir, mac, arch, firmware, uuid, hostname, kind, publicURL, agentToken string
	cmd := &cobra.Command{
		Use:   "render --mac MAC [--kind ipxe|ignition|cloud-config|grub|metadata]",
		Short: "Print exactly what a machine would receive from serve",
		Long: `Render matches a machine against a profiles directory and prints the iPXE
script, GRUB config, Ignition config, cloud-config or metadata that serve
would send it. It runs the same HTTP handler as serve, in-process, so the
output is byte for byte what the node gets. A server with the agent adds
it to every Ignition config with the node's own token; give that token
(bootfleet nodes agent-token MAC) with --agent-token to see it here too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, ok := renderPaths[kind]
			if !ok {
				return fmt.Errorf("--kind %q: want one of ipxe, ignition, cloud-config, grub, metadata", kind)
			}
			if mac == "" {
				return fmt.Errorf("--mac is required, e.g. --mac 52:54:00:aa:00:01")
			}
			fsys, name, err := profilesSource(dir, cmd.Flags().Changed("profiles"))
			if err != nil {
				return err
			}
			var opts ignition.Options
			if agentToken != "" {
				opts.Inject = ignition.AgentInjector()
			}
			set, r, err := loadChecked(fsys, name, opts)
			if err != nil {
				printErrors(cmd.ErrOrStderr(), err)
				return exitError{1}
			}
			boot, err := httpboot.New(httpboot.Config{
				PublicURL: publicURL,
				Log:       slog.New(slog.DiscardHandler),
				Metrics:   prometheus.NewRegistry(),
				AgentToken: func(string) string {
					return agentToken
				},
				AgentAvailable: func(string) bool { return agentToken != "" },
			}, httpboot.Snapshot{Set: set, Renderer: r})
			if err != nil {
				return err
			}
			q := url.Values{"mac": {mac}}
			for k, v := range map[string]string{"arch": arch, "firmware": firmware, "uuid": uuid, "hostname": hostname} {
				if v != "" {
					q.Set(k, v)
				}
			}
			rec := httptest.NewRecorder()
			boot.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, strings.TrimSuffix(publicURL, "/")+path+"?"+q.Encode(), nil))
			if rec.Code != http.StatusOK {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d %s: %s", path, rec.Code, http.StatusText(rec.Code), rec.Body.String())
				return exitError{1}
			}
			_, err = io.Copy(cmd.OutOrStdout(), rec.Body)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "profiles", "./profiles", "profiles directory (default ./profiles, or the built-in example when it does not exist)")
	f.StringVar(&mac, "mac", "", "the machine's MAC (aa:bb:.., aa-bb-.. or aabb..)")
	f.StringVar(&arch, "arch", "", "the machine's architecture: x86_64 or arm64")
	f.StringVar(&firmware, "firmware", "", "the machine's firmware: bios or uefi")
	f.StringVar(&uuid, "uuid", "", "the machine's SMBIOS UUID")
	f.StringVar(&hostname, "hostname", "", "the machine's hostname")
	f.StringVar(&kind, "kind", "ipxe", "what to render: ipxe, ignition, cloud-config, grub or metadata")
	f.StringVar(&publicURL, "public-url", "http://127.0.0.1:8080", "the server URL as nodes see it")
	f.StringVar(&agentToken, "agent-token", "", "the node's agent token (bootfleet nodes agent-token MAC): the Ignition then carries the agent as serve adds it")
	return cmd
}
