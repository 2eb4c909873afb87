package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/bootfleet/bootfleet/images"
)

func newImagesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Boot images: import kernels and initrds into a profiles directory, list them, build the lab's node image",
	}
	cmd.AddCommand(newImagesBuildLabCmd(), newImagesImportCmd(), newImagesListCmd(), newImagesBuildBrowserCmd())
	return cmd
}

func newImagesImportCmd() *cobra.Command {
	profilesDir := "./profiles"
	cmd := &cobra.Command{
		Use:   "import NAME FILE...",
		Short: "Copy boot files (kernel, initrds, rootfs) into PROFILES/assets/NAME/, with their sha256, served at /assets/NAME/",
		Long: `import registers the PXE images you downloaded (Flatcar, Fedora CoreOS, …)
so bootfleet serves them: for example

  bootfleet images import flatcar flatcar_production_pxe.vmlinuz flatcar_production_pxe_image.cpio.gz

and a profile boots them with kernel: /assets/flatcar/flatcar_production_pxe.vmlinuz.
The sums are in PROFILES/assets/NAME/SHA256SUMS (sha256sum -c checks them).
A running server picks the files up without a restart.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			got, err := images.Import(profilesDir, args[0], args[1:])
			if err != nil {
				return err
			}
			for _, im := range got {
				fmt.Fprintf(cmd.OutOrStdout(), "%s  %s  (%d bytes)\n", im.SHA256, im.Asset, im.Size)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&profilesDir, "profiles", profilesDir, "profiles directory")
	return cmd
}

func newImagesListCmd() *cobra.Command {
	profilesDir := "./profiles"
	var verify bool
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the imported images of a profiles directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := images.List(profilesDir)
			if err != nil {
				return err
			}
			if output == "json" {
				if list == nil {
					list = []images.Imported{}
				}
				return printJSON(cmd.OutOrStdout(), list)
			}
			bad := 0
			for _, im := range list {
				state := ""
				if verify {
					ok, err := im.Verify()
					switch {
					case err != nil:
						state, bad = "  MISSING: "+err.Error(), bad+1
					case !ok:
						state, bad = "  CHANGED since import", bad+1
					default:
						state = "  ok"
					}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%-12s %-48s %12d  %s%s\n", im.Image, im.Asset, im.Size, im.SHA256[:16], state)
			}
			if bad > 0 {
				return fmt.Errorf("%d file(s) do not match their sha256", bad)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&profilesDir, "profiles", profilesDir, "profiles directory")
	cmd.Flags().BoolVar(&verify, "verify", false, "recompute every file's sha256")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
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
	p := filepath.Join(filepath.Dir(exe), "bootfleet-agent-amd64")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}
