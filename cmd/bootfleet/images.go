package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/bootfleet/bootfleet/images"
)

func newImagesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Boot images: build the lab's node image",
	}
	cmd.AddCommand(newImagesBuildLabCmd())
	return cmd
}

func newImagesBuildLabCmd() *cobra.Command {
	var cfg images.LabConfig
	cmd := &cobra.Command{
		Use:   "build-lab",
		Short: "Build the lab node image (Debian kernel + busybox initramfs) from Debian packages",
		Long: `build-lab downloads the current Debian kernel and busybox-static with
apt-get (cached), and writes OUT/vmlinuz, OUT/initrd.img, SHA256SUMS and
image.json. The initramfs brings the NIC up with DHCP, fetches the node's
Ignition, applies it with the agent (--agent) and prints
"BOOTFLEET-READY mac=… ip=…" on the serial console.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			img, err := images.BuildLab(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s  %s\n%s  %s\n", img.SHA256["vmlinuz"], img.Kernel, img.SHA256["initrd.img"], img.Initrd)
			return nil
		},
	}
	cmd.Flags().StringVar(&cfg.Out, "out", "lab-image", "directory to write the image to")
	cmd.Flags().StringVar(&cfg.Cache, "cache", "", "where downloaded packages are kept (default ~/.cache/bootfleet)")
	cmd.Flags().StringVar(&cfg.Agent, "agent", defaultAgentPath(), "bootfleet-agent binary to include (\"\" for none)")
	return cmd
}

// defaultAgentPath is bootfleet-agent-amd64 next to this binary, if there.
func defaultAgentPath() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	p := exe[:len(exe)-len("bootfleet")] + "bootfleet-agent-amd64"
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}
