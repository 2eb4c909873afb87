package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bootfleet/bootfleet/api"
	"github.com/bootfleet/bootfleet/fleet"
	"github.com/bootfleet/bootfleet/profiles"
)

func newUnitsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "units",
		Short: "Units: containers placed on the fleet's nodes (submit, list, status, destroy, logs)",
	}
	cmd.AddCommand(newUnitsSubmitCmd(), newUnitsListCmd(), newUnitsStatusCmd(), newUnitsDestroyCmd(), newUnitsLogsCmd())
	return cmd
}

func newUnitsSubmitCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "submit FILE...",
		Short: "Submit unit files (YAML, one unit per document); a unit of the same name is replaced",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Check every file here first, so all errors show at once.
			var errs profiles.ErrorList
			datas := make([][]byte, len(args))
			for i, path := range args {
				data, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				if _, err := fleet.Parse(path, data); err != nil {
					var list profiles.ErrorList
					if errors.As(err, &list) {
						errs = append(errs, list...)
						continue
					}
					return err
				}
				datas[i] = data
			}
			if len(errs) > 0 {
				printErrors(cmd.ErrOrStderr(), errs.Err())
				return exitError{code: 1}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx, cancel := timeout(cmd)
			defer cancel()
			for i, path := range args {
				var units []fleet.Unit
				q := "?file=" + url.QueryEscape(filepath.Base(path))
				if err := c.do(ctx, "POST", "/api/v1/units"+q, rawBody{"application/yaml", datas[i]}, &units); err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				for _, u := range units {
					fmt.Fprintf(cmd.OutOrStdout(), "submitted %s\n", u.Name)
				}
			}
			return nil
		},
	}
	f.register(cmd, false)
	return cmd
}

func fetchUnits(cmd *cobra.Command, f *clientFlags) ([]fleet.UnitStatus, error) {
	c, err := f.client()
	if err != nil {
		return nil, err
	}
	ctx, cancel := timeout(cmd)
	defer cancel()
	var units []fleet.UnitStatus
	err = c.do(ctx, "GET", "/api/v1/units", nil, &units)
	return units, err
}

func newUnitsListCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List units with their replicas placed, running and pending",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			units, err := fetchUnits(cmd, &f)
			if err != nil {
				return err
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), units)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "UNIT\tIMAGE\tWANTED\tPLACED\tRUNNING\tPENDING")
			for _, u := range units {
				wanted := strconv.Itoa(u.Unit.Replicas)
				if u.Unit.Global {
					wanted = "global"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\n", u.Unit.Name, u.Unit.Image, wanted, len(u.Placement.Replicas), running(u), u.Placement.Pending)
			}
			return tw.Flush()
		},
	}
	f.register(cmd, true)
	return cmd
}

func running(u fleet.UnitStatus) int {
	n := 0
	for _, c := range u.Containers {
		if c.State == "running" {
			n++
		}
	}
	return n
}

func newUnitsStatusCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "status [UNIT...]",
		Short: "Where each replica runs, its container's state and resource use, and why replicas are pending",
		RunE: func(cmd *cobra.Command, args []string) error {
			units, err := fetchUnits(cmd, &f)
			if err != nil {
				return err
			}
			if len(args) > 0 {
				var picked []fleet.UnitStatus
				for _, name := range args {
					found := false
					for _, u := range units {
						if u.Unit.Name == name {
							picked, found = append(picked, u), true
						}
					}
					if !found {
						return fmt.Errorf("unit %s: not found (bootfleet units list shows them)", name)
					}
				}
				units = picked
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), units)
			}
			printUnitStatus(cmd.OutOrStdout(), units)
			return nil
		},
	}
	f.register(cmd, true)
	return cmd
}

func printUnitStatus(w io.Writer, units []fleet.UnitStatus) {
	for i, u := range units {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s  image %s\n", u.Unit.Name, u.Unit.Image)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  REPLICA\tNODE\tCONTAINER\tSTATE\tCPU\tMEMORY\tRX/TX\tRESTARTS")
		for _, r := range u.Placement.Replicas {
			name := fleet.ContainerName(u.Unit.Name, r.Index)
			state, cpu, mem, net, restarts := "starting", "-", "-", "-", "-"
			for _, c := range u.Containers {
				if c.Name == name && u.Nodes[c.Name+"@"+r.Node] == r.Node {
					state = c.State
					if c.Error != "" {
						state += ": " + c.Error
					}
					cpu = fmt.Sprintf("%.1f%%", c.CPUPercent)
					mem = fmt.Sprintf("%.1f MiB", float64(c.MemoryBytes)/(1<<20))
					net = fmt.Sprintf("%d/%d B", c.NetRxBytes, c.NetTxBytes)
					restarts = strconv.Itoa(c.Restarts)
				}
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Index, r.Node, name, state, cpu, mem, net, restarts)
		}
		tw.Flush()
		if u.Placement.Pending > 0 {
			fmt.Fprintf(w, "  pending: %d replica(s): %s\n", u.Placement.Pending, u.Placement.Reason)
		}
	}
}

func newUnitsDestroyCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "destroy UNIT...",
		Short: "Remove units; their containers are stopped and removed on every node",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx, cancel := timeout(cmd)
			defer cancel()
			for _, name := range args {
				if err := c.do(ctx, "DELETE", "/api/v1/units/"+url.PathEscape(name), nil, nil); err != nil {
					return fmt.Errorf("unit %s: %w", name, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "destroyed %s\n", name)
			}
			return nil
		},
	}
	f.register(cmd, false)
	return cmd
}

func newUnitsLogsCmd() *cobra.Command {
	var f clientFlags
	var node string
	var replica, tail int
	cmd := &cobra.Command{
		Use:   "logs UNIT",
		Short: "Show the logs of a unit's container, fetched from its node by the agent",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			q := url.Values{"replica": {strconv.Itoa(replica)}, "tail": {strconv.Itoa(tail)}}
			if node != "" {
				q.Set("node", node)
			}
			ctx, cancel := timeout(cmd)
			defer cancel()
			var out api.UnitLogs
			if err := c.do(ctx, "GET", "/api/v1/units/"+url.PathEscape(args[0])+"/logs?"+q.Encode(), nil, &out); err != nil {
				return err
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprint(cmd.OutOrStdout(), out.Logs)
			if out.Logs != "" && !strings.HasSuffix(out.Logs, "\n") {
				fmt.Fprintln(cmd.OutOrStdout())
			}
			return nil
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVar(&node, "node", "", "the node (MAC) whose container to read (default: where the replica is placed)")
	cmd.Flags().IntVar(&replica, "replica", 0, "replica number")
	cmd.Flags().IntVar(&tail, "tail", 100, "number of lines from the end")
	return cmd
}
