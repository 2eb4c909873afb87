package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bootfleet/bootfleet/api"
	"github.com/bootfleet/bootfleet/profiles"
	"github.com/bootfleet/bootfleet/registry"
)

func newNodesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "The node inventory: list, show, label, forget, next-boot",
	}
	cmd.AddCommand(newNodesListCmd(), newNodesShowCmd(), newNodesLabelCmd(), newNodesForgetCmd(), newNodesNextBootCmd(), newNodesAgentTokenCmd())
	return cmd
}

// nodeCall makes one API call about the node named by macText:
// METHOD /api/v1/nodes/<mac><suffix>, decoding the answer into out.
func nodeCall(cmd *cobra.Command, f *clientFlags, macText, method, suffix string, body, out any) error {
	mac, err := profiles.NormalizeMAC(macText)
	if err != nil {
		return err
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	ctx, cancel := timeout(cmd)
	defer cancel()
	return c.do(ctx, method, "/api/v1/nodes/"+url.PathEscape(mac)+suffix, body, out)
}

func newNodesListCmd() *cobra.Command {
	var f clientFlags
	var watch bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List nodes (with --watch, then every change as it happens)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if watch {
				return watchNodes(cmd, c, f.output)
			}
			ctx, cancel := timeout(cmd)
			defer cancel()
			var nodes []registry.Node
			if err := c.do(ctx, "GET", "/api/v1/nodes", nil, &nodes); err != nil {
				return err
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), nodes)
			}
			printNodeTable(cmd.OutOrStdout(), nodes)
			return nil
		},
	}
	f.register(cmd, true)
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "after the list, print every change until interrupted")
	return cmd
}

func printNodeTable(w io.Writer, nodes []registry.Node) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MAC\tSTATE\tIP\tARCH\tGROUP\tPROFILE\tLABELS\tLAST SEEN")
	for _, n := range nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.MAC, n.State, dash(n.IP), dash(n.Arch), dash(n.Group), dash(n.Profile), labelsText(n.Labels), ago(n.LastSeen))
	}
	tw.Flush()
}

func watchNodes(cmd *cobra.Command, c *apiClient, output string) error {
	resp, err := c.open(cmd.Context(), "GET", "/api/v1/nodes?watch=1", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	w := cmd.OutOrStdout()
	for sc.Scan() {
		if output == "json" {
			fmt.Fprintln(w, sc.Text())
			continue
		}
		var ch registry.Change
		if err := json.Unmarshal(sc.Bytes(), &ch); err != nil {
			return fmt.Errorf("watch: bad line: %w", err)
		}
		n := ch.Node
		if ch.Deleted {
			fmt.Fprintf(w, "%s  forgotten\n", n.MAC)
			continue
		}
		fmt.Fprintf(w, "%s  %-11s  ip=%s group=%s profile=%s\n", n.MAC, n.State, dash(n.IP), dash(n.Group), dash(n.Profile))
	}
	if cmd.Context().Err() != nil {
		return nil
	}
	return sc.Err()
}

func newNodesShowCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "show MAC",
		Short: "Show a node's facts and boot timeline with the time each step took",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var n registry.Node
			if err := nodeCall(cmd, &f, args[0], "GET", "", nil, &n); err != nil {
				return err
			}
			if f.output == "json" {
				if n.Timeline == nil {
					n.Timeline = []registry.Event{}
				}
				return printJSON(cmd.OutOrStdout(), n)
			}
			printNode(cmd.OutOrStdout(), n)
			return nil
		},
	}
	f.register(cmd, true)
	return cmd
}

func printNode(w io.Writer, n registry.Node) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, dash(v)) }
	row("MAC", n.MAC)
	row("State", string(n.State))
	row("IP", n.IP)
	row("Arch", n.Arch)
	row("Firmware", n.Firmware)
	row("UUID", n.UUID)
	row("Hostname", n.Hostname)
	row("Vendor class", n.VendorClass)
	row("User class", n.UserClass)
	row("Group", n.Group)
	row("Profile", n.Profile)
	row("Next boot", n.NextBoot)
	row("Labels", labelsText(n.Labels))
	row("First seen", n.FirstSeen.Format(time.RFC3339))
	row("Last seen", n.LastSeen.Format(time.RFC3339)+" ("+ago(n.LastSeen)+")")
	tw.Flush()
	if len(n.Timeline) == 0 {
		return
	}
	fmt.Fprintln(w, "\nTimeline:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\t+STEP\tEVENT\tDETAIL\tSERVER")
	for i, e := range n.Timeline {
		step := "-"
		if i > 0 {
			step = "+" + e.Time.Sub(n.Timeline[i-1].Time).Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.Format("15:04:05.000"), step, e.Event, dash(e.Detail), dash(e.Server))
	}
	tw.Flush()
	if len(n.Timeline) > 1 {
		fmt.Fprintf(w, "Total: %s from %s to %s\n", n.Timeline[len(n.Timeline)-1].Time.Sub(n.Timeline[0].Time).Round(time.Millisecond), n.Timeline[0].Event, n.Timeline[len(n.Timeline)-1].Event)
	}
}

func newNodesLabelCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "label MAC key=value... [key-...]",
		Short: "Set (key=value) or remove (key-) operator labels; labels take part in profile matching",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := api.LabelRequest{Set: map[string]string{}}
			for _, a := range args[1:] {
				if k, v, ok := strings.Cut(a, "="); ok {
					req.Set[k] = v
				} else if k, ok := strings.CutSuffix(a, "-"); ok {
					req.Remove = append(req.Remove, k)
				} else {
					return fmt.Errorf("%q: want key=value to set or key- to remove", a)
				}
			}
			var n registry.Node
			if err := nodeCall(cmd, &f, args[0], "PATCH", "/labels", req, &n); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s labels: %s\n", n.MAC, labelsText(n.Labels))
			return nil
		},
	}
	f.register(cmd, false)
	return cmd
}

func newNodesForgetCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "forget MAC",
		Short: "Remove a node and its timeline from the inventory",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := nodeCall(cmd, &f, args[0], "DELETE", "", nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s forgotten\n", args[0])
			return nil
		},
	}
	f.register(cmd, false)
	return cmd
}

func newNodesNextBootCmd() *cobra.Command {
	var f clientFlags
	var clear bool
	cmd := &cobra.Command{
		Use:   "next-boot MAC [PROFILE]",
		Short: "Boot a node with PROFILE once (e.g. a rescue profile), then back to its matched profile",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := api.NextBootRequest{}
			switch {
			case len(args) == 2 && !clear:
				req.Profile = args[1]
			case len(args) == 1 && clear:
			default:
				return fmt.Errorf("give a PROFILE, or --clear to cancel a pending next boot")
			}
			var n registry.Node
			if err := nodeCall(cmd, &f, args[0], "PUT", "/next-boot", req, &n); err != nil {
				return err
			}
			if n.NextBoot == "" {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: next boot cleared\n", n.MAC)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s boots %s once on its next boot\n", n.MAC, n.NextBoot)
			}
			return nil
		},
	}
	f.register(cmd, false)
	cmd.Flags().BoolVar(&clear, "clear", false, "cancel a pending next boot")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func labelsText(l map[string]string) string {
	if len(l) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func newNodesAgentTokenCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "agent-token MAC",
		Short: "Print a node's agent token (to install the agent by hand, or for render --agent-token)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var t api.AgentToken
			if err := nodeCall(cmd, &f, args[0], "GET", "/agent-token", nil, &t); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			return nil
		},
	}
	f.register(cmd, false)
	return cmd
}
