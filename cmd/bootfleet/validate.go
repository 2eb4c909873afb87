package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/bootfleet/bootfleet/ignition"
)

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Check a profiles directory; print every problem as path:line:col",
		Long: `Validate loads a profiles directory as serve would: groups, profiles,
Butane and cloud-config templates (rendered for every group that uses them,
transpiled and validated). It prints every problem as path:line:col: message
and exits 1 when there is any; warnings are printed but do not fail.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, explicit := "./profiles", false
			if len(args) == 1 {
				dir, explicit = args[0], true
			}
			fsys, name, err := profilesSource(dir, explicit)
			if err != nil {
				return err
			}
			set, r, err := loadChecked(fsys, name, ignition.Options{})
			if err != nil {
				printErrors(cmd.ErrOrStderr(), err)
				return exitError{1}
			}
			for _, w := range append(set.Warnings, r.Warnings...) {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid (%d groups, %d profiles, %d Ignition and %d cloud-config templates)\n",
				name, len(set.Groups), len(set.Profiles), len(set.Ignition), len(set.Cloud))
			return nil
		},
	}
}
