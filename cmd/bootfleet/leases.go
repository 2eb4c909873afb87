package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bootfleet/bootfleet/dhcp"
)

func newLeasesCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "leases",
		Short: "List the DHCP leases of a server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx, cancel := timeout(cmd)
			defer cancel()
			var leases []dhcp.Lease
			if err := c.do(ctx, "GET", "/api/v1/leases", nil, &leases); err != nil {
				return err
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), leases)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "IP\tMAC\tSTATE\tEXPIRES\tHOSTNAME\tSERVER")
			for _, l := range leases {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", l.IP, dash(l.MAC), l.State, l.Expires.Format(time.RFC3339), dash(l.Hostname), l.Server)
			}
			return tw.Flush()
		},
	}
	f.register(cmd, true)
	return cmd
}
