// Command bootfleet-agent is the slim node agent: it joins the bootfleet
// server named in its env file, heartbeats, and runs the containers
// assigned to its node through the Docker Engine API.
//
//	bootfleet-agent --env-file /etc/bootfleet/agent.env [--docker-host unix:///var/run/docker.sock]
//	bootfleet-agent ignition-apply FILE [--root DIR]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/bootfleet/bootfleet/agent"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "ignition-apply" {
		return ignitionApply(ctx, args[1:], stderr)
	}
	fs := flag.NewFlagSet("bootfleet-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	envFile := fs.String("env-file", "", "file with BOOTFLEET_SERVER, BOOTFLEET_NODE and BOOTFLEET_TOKEN (KEY=value lines)")
	dockerHost := fs.String("docker-host", "", "Docker Engine API: unix:///path.sock or tcp://host:port (default $DOCKER_HOST or unix:///var/run/docker.sock)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(os.Stdout, "bootfleet-agent", version)
		return 0
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "bootfleet-agent: --log-level %q: want debug, info, warn or error\n", *logLevel)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	env := map[string]string{}
	for _, k := range []string{"BOOTFLEET_SERVER", "BOOTFLEET_NODE", "BOOTFLEET_TOKEN", "DOCKER_HOST"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	if *envFile != "" {
		if err := readEnvFile(*envFile, env); err != nil {
			fmt.Fprintln(stderr, "bootfleet-agent:", err)
			return 2
		}
	}
	host := *dockerHost
	if host == "" {
		host = env["DOCKER_HOST"]
	}
	if host == "" {
		host = "unix:///var/run/docker.sock"
	}
	docker, err := agent.NewDocker(host)
	if err != nil {
		fmt.Fprintln(stderr, "bootfleet-agent:", err)
		return 2
	}
	var servers []string
	for s := range strings.SplitSeq(env["BOOTFLEET_SERVER"], ",") {
		if s = strings.TrimSpace(s); s != "" {
			servers = append(servers, s)
		}
	}
	a, err := agent.New(agent.Config{
		Servers: servers,
		Node:    strings.ToLower(env["BOOTFLEET_NODE"]),
		Token:   env["BOOTFLEET_TOKEN"],
		Docker:  docker,
		Version: version,
		Log:     log,
	})
	if err != nil {
		fmt.Fprintln(stderr, "bootfleet-agent:", err)
		return 2
	}
	log.Info("bootfleet-agent starting", "version", version, "servers", servers, "node", env["BOOTFLEET_NODE"], "docker", host)
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(stderr, "bootfleet-agent:", err)
		return 1
	}
	return 0
}

// readEnvFile reads KEY=value lines (blank lines and # comments skipped,
// values optionally quoted) into env; the file wins over the environment.
func readEnvFile(path string, env map[string]string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("env file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("%s:%d: want KEY=value, got %q", path, n, line)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		env[strings.TrimSpace(strings.TrimPrefix(k, "export "))] = v
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("env file %s: %w", path, err)
	}
	return nil
}

func ignitionApply(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("ignition-apply", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("root", "/", "directory the config's paths are relative to")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: bootfleet-agent ignition-apply FILE [--root DIR]")
		return 2
	}
	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "bootfleet-agent:", err)
		return 1
	}
	written, err := agent.ApplyIgnition(ctx, data, *root)
	for _, p := range written {
		fmt.Fprintln(stderr, "wrote", p)
	}
	if err != nil {
		var skipped *agent.SkippedError
		if errors.As(err, &skipped) {
			fmt.Fprintln(stderr, "bootfleet-agent:", err)
			return 0
		}
		fmt.Fprintln(stderr, "bootfleet-agent:", err)
		return 1
	}
	return 0
}
