package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/bootfleet/bootfleet/images"
	"github.com/bootfleet/bootfleet/lab"
)

func newLabCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "A PXE lab on this machine: QEMU VMs booting from bootfleet in a network namespace",
	}
	cmd.AddCommand(newLabUpCmd(), newLabStatusCmd(), newLabDownCmd(), newLabLibvirtCmd())
	return cmd
}

func newLabUpCmd() *cobra.Command {
	cfg := lab.Config{Dir: "bootfleet-lab", Nodes: 2, Firmware: lab.FirmwareBIOS, Accel: "auto"}
	var detach bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start the lab and show each node's progress until Ctrl-C, which tears it down",
		Long: `up makes a network namespace with a bridge (10.77.0.1/24) and a tap per VM,
starts bootfleet serve in it (DHCP full with router advertisements, TFTP,
HTTP on 10.77.0.1:8080), and boots --nodes QEMU VMs from it. It shows a
line per node: DHCP → iPXE → kernel → Ignition → ready → agent, with the
time each step was reached. Ctrl-C removes everything; so does lab down,
also after a crash. Serial consoles are in DIR/vm-N.log, the server's log
in DIR/server.log.

The node image is built on first use (bootfleet images build-lab) into
DIR/image unless --image names one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			cfg.Log = log
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			cfg.Bootfleet = exe
			if cfg.Image == "" {
				cfg.Image = filepath.Join(cfg.Dir, "image")
			}
			if _, err := os.Stat(filepath.Join(cfg.Image, "initrd.img")); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "building the lab image into %s (Debian kernel and busybox, cached)…\n", cfg.Image)
				if _, err := images.BuildLab(cmd.Context(), images.LabConfig{Out: cfg.Image, Agent: defaultAgentPath(), Log: log}); err != nil {
					return err
				}
			}
			// The lab outlives a Ctrl-C only long enough to be torn down.
			ctx := cmd.Context()
			st, err := lab.Up(context.WithoutCancel(ctx), cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab up: %d node(s), %s firmware, accel %s, netns %s, server %s (logs in %s)\n",
				len(st.Nodes), cfg.Firmware, st.Accel, st.Netns, lab.ServerURL, st.Dir)
			allReady, failed := watchLab(ctx, cmd.OutOrStdout(), st, timeout, detach)
			if detach {
				switch {
				case len(failed) > 0:
					return fmt.Errorf("%s; the lab is still up (bootfleet lab status, lab down; consoles in %s)", strings.Join(failed, "; "), st.Dir)
				case !allReady:
					return fmt.Errorf("not every node was ready within %s; the lab is still up (bootfleet lab status, lab down)", timeout)
				}
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout(), "tearing the lab down…")
			return lab.Down(st.Dir, log)
		},
	}
	cmd.Flags().StringVar(&cfg.Dir, "dir", cfg.Dir, "lab directory (state, server data, consoles)")
	cmd.Flags().IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "number of VMs")
	cmd.Flags().IntVar(&cfg.Strangers, "strangers", 0, "extra VMs no group selects, to see bootfleet refuse them")
	cmd.Flags().StringVar(&cfg.Firmware, "firmware", cfg.Firmware, "bios, uefi (NIC's iPXE ROM), uefi-pxe (firmware's own PXE, as a real server) or mixed")
	cmd.Flags().StringVar(&cfg.Image, "image", "", "directory with vmlinuz and initrd.img (default DIR/image, built when missing)")
	cmd.Flags().StringVar(&cfg.Accel, "accel", cfg.Accel, "tcg, kvm, or auto (KVM only when a probe boot works)")
	cmd.Flags().IntVar(&cfg.Memory, "memory", 512, "MiB per VM")
	cmd.Flags().BoolVar(&detach, "detach", false, "return once every node is ready, leaving the lab up")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "with --detach: how long to wait for the nodes")
	return cmd
}

// watchLab prints the nodes' progress until ctx ends or, with detach,
// until every node is ready, one failed, or timeout; it reports whether
// all were ready, and the nodes that failed (their console's reason).
func watchLab(ctx context.Context, w io.Writer, st *lab.State, timeout time.Duration, detach bool) (ready bool, failed []string) {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	deadline := time.Now().Add(timeout)
	var last []string
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		ps, err := lab.Status(ctx, st, true)
		if err == nil {
			lines := make([]string, len(ps))
			ready, failed = true, nil
			for i, p := range ps {
				lines[i] = p.Line()
				ready = ready && p.Done() && p.Failed == ""
				if p.Failed != "" && !p.IsReady {
					failed = append(failed, fmt.Sprintf("node %s (%s) failed: %s", p.Node.MAC, p.Node.Firmware, p.Failed))
				}
			}
			switch {
			case tty && last != nil:
				fmt.Fprintf(w, "\x1b[%dA", len(last))
				for _, l := range lines {
					fmt.Fprintf(w, "\x1b[2K%s\n", l)
				}
			case tty:
				fmt.Fprintln(w, strings.Join(lines, "\n"))
			default:
				for i, l := range lines {
					if last == nil || last[i] != l {
						fmt.Fprintln(w, l)
					}
				}
			}
			last = lines
		}
		if detach && (ready || len(failed) > 0 || time.Now().After(deadline)) {
			if ready {
				fmt.Fprintln(w, "all nodes ready")
			}
			return ready, failed
		}
		select {
		case <-ctx.Done():
			return ready, failed
		case <-tick.C:
		}
	}
}

func newLabStatusCmd() *cobra.Command {
	dir := "bootfleet-lab"
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each lab node's progress",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := lab.ReadState(dir)
			if err != nil {
				return fmt.Errorf("no lab in %s: %w", dir, err)
			}
			ps, err := lab.Status(cmd.Context(), st, false)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab in %s: netns %s, accel %s, server %s, up since %s\n", st.Dir, st.Netns, st.Accel, lab.ServerURL, st.Started.Format(time.RFC3339))
			for _, p := range ps {
				fmt.Fprintln(cmd.OutOrStdout(), p.Line())
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", dir, "lab directory")
	return cmd
}

func newLabDownCmd() *cobra.Command {
	dir := "bootfleet-lab"
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove everything the lab made: VMs, server, namespace, bridge and taps",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.Down(dir, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab in %s is down\n", dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", dir, "lab directory")
	return cmd
}

func newLabLibvirtCmd() *cobra.Command {
	var out, firmware string
	var nodes, memory int
	cmd := &cobra.Command{
		Use:   "libvirt-xml",
		Short: "Write libvirt network and domain XML for the same lab, for users who run libvirt",
		Long: `libvirt-xml writes OUT/network.xml (an isolated network on bridge bfbr0
with 10.77.0.1/24, no DHCP of libvirt's own) and OUT/node-N.xml (VMs booting
from the network with the lab's MACs and firmware). Then:

  virsh net-define OUT/network.xml && virsh net-start bootfleet-lab
  bootfleet serve --dhcp full --interface bfbr0 --public-url http://10.77.0.1:8080
  for f in OUT/node-*.xml; do virsh define "$f"; done; virsh start bootfleet-lab-0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			files, err := lab.LibvirtXML(out, nodes, firmware, memory)
			if err != nil {
				return err
			}
			for _, f := range files {
				fmt.Fprintln(cmd.OutOrStdout(), f)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "libvirt", "directory to write the XML to")
	cmd.Flags().IntVar(&nodes, "nodes", 2, "number of VMs")
	cmd.Flags().StringVar(&firmware, "firmware", lab.FirmwareBIOS, "bios, uefi, uefi-pxe or mixed")
	cmd.Flags().IntVar(&memory, "memory", 512, "MiB per VM")
	return cmd
}
