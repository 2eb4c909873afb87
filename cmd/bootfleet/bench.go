package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/bootfleet/bootfleet/storm"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks against a running bootfleet server",
	}
	cmd.AddCommand(newBenchStormCmd())
	return cmd
}

func newBenchStormCmd() *cobra.Command {
	var cfg storm.Config
	var arrival, firstMAC, jsonOut string
	cmd := &cobra.Command{
		Use:   "storm --server URL --nodes N [--interface IF]",
		Short: "Boot many simulated machines at once against a running server and report per phase",
		Long: `storm plays N machines powered on together, each running the real boot
sequence against a running bootfleet server: DHCP as PXE firmware (option 93,
vendor class PXEClient) and TFTP of the iPXE binary for the --pxe-share of
machines with PXE firmware, DHCP as iPXE (user class iPXE), /boot.ipxe, the
machine's /ipxe script, its kernel and initrds, /ignition, the files Ignition
downloads (the agent), and the agent's join and heartbeats with the token the
Ignition config carries. It prints per phase count, failures and p50/p95/p99,
the time for the whole fleet to be ready and, with --server-pid, the server's
CPU and memory; with --rate-streams, the asset rate of this client alone
first and the fleet time against the time the asset bytes need at that rate.

Run it where the machines would be: in a network namespace on the server's
segment (ip netns exec NS bootfleet bench storm --interface IF ...). DHCP
needs UDP port 68 there. Machines' MACs count up from --first-mac; a probe
machine 02:bf:ff:ff:ff:fe is used for the rate. It exits 1 when a machine
failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := storm.ParseArrival(arrival)
			if err != nil {
				return err
			}
			cfg.Arrival = a
			if cfg.FirstMAC, err = net.ParseMAC(firstMAC); err != nil {
				return fmt.Errorf("--first-mac: %w", err)
			}
			cfg.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
			rep, err := storm.Run(cmd.Context(), cfg)
			if rep == nil {
				return err
			}
			rep.WriteMarkdown(cmd.OutOrStdout())
			if jsonOut != "" {
				b, jerr := json.MarshalIndent(rep, "", "  ")
				if jerr == nil {
					jerr = os.WriteFile(jsonOut, append(b, '\n'), 0o644)
				}
				if jerr != nil {
					return fmt.Errorf("--json: %w", jerr)
				}
			}
			if err != nil {
				return err
			}
			if rep.Complete != rep.Nodes || rep.Failures() > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "bootfleet: storm: %d of %d machines completed, %d failed requests\n", rep.Complete, rep.Nodes, rep.Failures())
				return exitError{code: 1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Server, "server", "http://127.0.0.1:8080", "the server's HTTP base URL as machines reach it")
	f.IntVar(&cfg.Nodes, "nodes", 100, "number of machines")
	f.StringVar(&arrival, "arrival", "all", "all (at once) or ramp:DURATION (evenly over it)")
	f.Float64Var(&cfg.PXEShare, "pxe-share", 0.5, "share of machines with PXE firmware (half BIOS, half UEFI) that load iPXE over TFTP; the rest have iPXE in ROM")
	f.StringVar(&cfg.Interface, "interface", "", "client interface for DHCP (empty: no DHCP, machines start at /boot.ipxe)")
	f.StringVar(&cfg.TFTP, "tftp", "", "TFTP server host:port (default: the server's host, port 69)")
	f.StringVar(&firstMAC, "first-mac", "02:bf:00:00:00:00", "MAC of the first machine; the others count up")
	f.IntVar(&cfg.Heartbeats, "heartbeats", 3, "heartbeats each agent sends after joining")
	f.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", 0, "time between heartbeats (default: what the server's join answer says)")
	f.DurationVar(&cfg.DHCPTimeout, "dhcp-timeout", 2*time.Second, "first DHCP retransmission timeout (doubles each try)")
	f.IntVar(&cfg.DHCPTries, "dhcp-tries", 5, "DHCP tries per message")
	f.DurationVar(&cfg.TFTPTimeout, "tftp-timeout", 2*time.Second, "TFTP client's wait for each block before asking again")
	f.IntVar(&cfg.TFTPRetries, "tftp-retries", 5, "TFTP client's tries per block")
	f.DurationVar(&cfg.RequestTimeout, "request-timeout", 5*time.Minute, "limit per HTTP request or TFTP transfer")
	f.IntVar(&cfg.JoinTries, "join-tries", 5, "joins an agent tries (with the real agent's backoff) before its machine counts as failed; each failed try counts as a failed request")
	f.DurationVar(&cfg.BootDelay, "boot-delay", 0, "time between the initrd and the Ignition fetch (the kernel booting)")
	f.IntVar(&cfg.ServerPID, "server-pid", 0, "server process to sample CPU and memory of (from /proc)")
	f.IntVar(&cfg.RateStreams, "rate-streams", 0, "measure the asset rate of this client alone first, over this many connections (0: don't)")
	f.DurationVar(&cfg.RateDuration, "rate-duration", 5*time.Second, "how long to measure the asset rate")
	f.BoolVar(&cfg.Metrics, "metrics", true, "report what the server's /metrics counted during the storm")
	f.StringVar(&jsonOut, "json", "", "also write the report as JSON to this file")
	return cmd
}
