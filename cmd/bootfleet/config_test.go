package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bootfleet.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFile(t *testing.T) {
	p := writeConfig(t, `
data_dir: /var/lib/bootfleet
http: {listen: ":9090", public_url: "http://10.77.0.1:9090"}
dhcp:
  mode: full
  interface: br0
  pool: {start: 10.77.0.100, end: 10.77.0.250}
  lease_time: 2h
  router: 10.77.0.1
  dns: [10.77.0.1]
  reservations: {"52-54-00-AA-00-01": 10.77.0.50}
fleet: {node_ttl: 30s}
`)
	cfg := DefaultConfig()
	if err := loadConfigFile(p, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Listen != ":9090" || cfg.DHCP.LeaseTime != 2*time.Hour || cfg.Fleet.NodeTTL != 30*time.Second || cfg.DHCP.Pool.End != "10.77.0.250" {
		t.Errorf("decoded %+v", cfg)
	}
	if cfg.DHCP.Reservations["52-54-00-AA-00-01"] != "10.77.0.50" {
		t.Errorf("reservations: %v", cfg.DHCP.Reservations)
	}
	if at := cfg.reservationAt["52-54-00-AA-00-01"]; at != p+":11:39" {
		t.Errorf("reservation located at %q, want %s:11:39", at, p)
	}
	if cfg.Profiles != "./profiles" || !cfg.TFTP.Enabled {
		t.Errorf("defaults lost for keys the file does not set: %+v", cfg)
	}
}

func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"http: {listen: \":80\", colour: red}\n", ":1:23: unknown field \"colour\""},
		{"dhcp:\n  lease_time: soon\n", `invalid duration "soon"`},
		{"data_dir: [a\n", ":1:"},
	} {
		cfg := DefaultConfig()
		err := loadConfigFile(writeConfig(t, tc.text), &cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.text, err, tc.want)
		}
	}
}

func TestConfigValidateReportsEverything(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HTTP.Listen = "8080"
	cfg.HTTP.PublicURL = "10.0.0.1"
	cfg.DHCP.Mode = "full"
	cfg.DHCP.Pool = PoolConfig{Start: "10.0.0.9", End: "10.0.0.1"}
	cfg.DHCP.DNS = []string{"dns.example"}
	cfg.DHCP.Reservations = map[string]string{"zz": "10.0.0.5", "525400000001": "10.0.0.6", "52:54:00:00:00:02": "10.0.0.6"}
	cfg.Fleet.NodeTTL = 0
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"http.listen", "http.public_url", "dhcp.interface", "dhcp.pool: end 10.0.0.1 is before start 10.0.0.9", "dhcp.dns[0]", "fleet.node_ttl", `dhcp.reservations: invalid MAC "zz"`, "both want 10.0.0.6"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// Flags win over the file; the environment fills flags not given.
func TestServeFlagsOverFile(t *testing.T) {
	cfg := DefaultConfig()
	cmd := &cobra.Command{Use: "x", Run: func(*cobra.Command, []string) {}}
	copyFlag := bindServeFlags(cmd.Flags(), &cfg)
	t.Setenv("BOOTFLEET_LOG_LEVEL", "debug")
	if err := cmd.Flags().Parse([]string{"--http", "127.0.0.1:1234", "--dhcp-dns", "10.1.1.1,10.1.1.2"}); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(cmd); err != nil {
		t.Fatal(err)
	}
	file := DefaultConfig()
	file.HTTP.Listen = ":9999"
	file.DataDir = "/from/file"
	for name := range copyFlag {
		if cmd.Flags().Changed(name) {
			copyFlag[name](&file, &cfg)
		}
	}
	if file.HTTP.Listen != "127.0.0.1:1234" || file.DataDir != "/from/file" || file.LogLevel != "debug" || len(file.DHCP.DNS) != 2 {
		t.Errorf("merged config %+v", file)
	}
	// Every flag has a copier, so no flag is silently ignored with --config.
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if _, ok := copyFlag[f.Name]; !ok {
			t.Errorf("flag --%s has no copier", f.Name)
		}
	})
}
