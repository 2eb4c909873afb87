package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/bootfleet/bootfleet/images"
)

func newImagesBuildBrowserCmd() *cobra.Command {
	var cfg images.BrowserConfig
	var out, dataDir string
	cmd := &cobra.Command{
		Use:   "build-browser [--out FILE]",
		Short: "Build the browser-load container image (docker archive) from Debian's installed Chromium and this binary",
		Long: `build-browser writes a docker-archive image tagged bootfleet/browser-load:latest
holding Debian's installed chromium-headless-shell (and full chromium with
--chromium), the shared libraries they link, fonts, CA certificates and
this bootfleet binary — from this machine's files, with no registry pull.
By default it goes to <data-dir>/container-images/browser-load.tar, where
the server hands it to agents on air-gapped nodes; "docker load" and
"podman load" take it too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Bootfleet == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				cfg.Bootfleet = exe
			}
			if out == "" {
				out = filepath.Join(dataDir, images.ContainerArchiveDir, "browser-load.tar")
			}
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return err
			}
			tmp := out + ".tmp"
			f, err := os.Create(tmp)
			if err != nil {
				return err
			}
			defer os.Remove(tmp)
			start := time.Now()
			st, err := images.BuildBrowser(f, cfg)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			if err := os.Rename(tmp, out); err != nil {
				return err
			}
			fi, _ := os.Stat(out)
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s, %d files, %d MiB (built in %s)\n", out, cfg.Tag, st.Files, fi.Size()>>20, time.Since(start).Round(100*time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "archive to write (default <data-dir>/container-images/browser-load.tar)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "./bootfleet-data", "server data dir whose container-images/ the archive goes to")
	cmd.Flags().BoolVar(&cfg.Chromium, "chromium", false, "add Debian's full chromium beside chromium-headless-shell")
	cmd.Flags().StringVar(&cfg.Bootfleet, "bootfleet", "", "bootfleet binary to put in the image (default: this one)")
	cmd.Flags().StringVar(&cfg.Tag, "tag", images.BrowserImage, "image tag")
	return cmd
}
