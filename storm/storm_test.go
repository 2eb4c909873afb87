package storm

import (
	"math"
	"net"
	"strings"
	"testing"
	"time"
)

func TestParseArrival(t *testing.T) {
	for in, want := range map[string]time.Duration{"all": 0, "": 0, "ramp:30s": 30 * time.Second, "ramp:1m": time.Minute} {
		a, err := ParseArrival(in)
		if err != nil || a.Ramp != want {
			t.Errorf("%q: %v %v, want ramp %v", in, a, err, want)
		}
	}
	for _, in := range []string{"ramp:", "ramp:-1s", "ramp:0s", "some", "ramp30s"} {
		if _, err := ParseArrival(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// The PXE share is spread over the fleet, half BIOS and half UEFI, and
// MACs count up across byte boundaries.
func TestFleetMakeup(t *testing.T) {
	c := Config{Server: "http://10.0.0.1:8080", Nodes: 1000, PXEShare: 0.5}
	if err := c.defaults(); err != nil {
		t.Fatal(err)
	}
	count := map[firmware]int{}
	for i := range c.Nodes {
		count[c.firmware(i)]++
	}
	if count[ipxeROM] != 500 || count[pxeBIOS] != 250 || count[pxeUEFI] != 250 {
		t.Errorf("makeup %v, want 500 iPXE ROM, 250 BIOS, 250 UEFI", count)
	}
	if got := c.MAC(0x1ff).String(); got != "02:bf:00:00:01:ff" {
		t.Errorf("MAC(0x1ff) = %s", got)
	}
	c.FirstMAC, _ = net.ParseMAC("52:54:00:ff:ff:ff")
	if got := c.MAC(1).String(); got != "52:54:01:00:00:00" {
		t.Errorf("MAC after ff:ff:ff = %s", got)
	}
	if c.TFTP != "10.0.0.1:69" {
		t.Errorf("default TFTP %s", c.TFTP)
	}
	for _, bad := range []Config{{Server: "http://x", Nodes: 0}, {Server: "nope", Nodes: 1}, {Server: "http://x", Nodes: 1, PXEShare: 2}} {
		if err := bad.defaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// The scripts as bootfleet serves them (see httpboot's golden files).
const bootScript = `#!ipxe
# bootfleet: ask for this machine's own boot script.
iseq ${platform} efi && set bootfleet_fw uefi || set bootfleet_fw bios
:retry
chain --replace --autofree http://10.77.0.1:8080/ipxe?mac=${mac:hexhyp}&arch=${buildarch}&firmware=${bootfleet_fw}&uuid=${uuid} || goto failed
`

const machineScript = `#!ipxe
# bootfleet: mac=52:54:00:00:00:05 group=default profile=flatcar-worker
kernel http://10.77.0.1:8080/assets/k?mac=52%3A54 initrd=a.gz flatcar.first_boot=yes ignition.config.url=http://10.77.0.1:8080/ignition?mac=52:54:00:00:00:05
initrd --name a.gz http://10.77.0.1:8080/assets/a.gz?mac=52%3A54
initrd --name b.gz http://10.77.0.1:8080/assets/b.gz?mac=52%3A54
boot
`

func TestScripts(t *testing.T) {
	m := &machine{mac: net.HardwareAddr{0x02, 0xbf, 0, 0, 0, 7}, fw: pxeUEFI}
	u, err := m.chainURL([]byte(bootScript))
	if err != nil {
		t.Fatal(err)
	}
	if want := "http://10.77.0.1:8080/ipxe?mac=02-bf-00-00-00-07&arch=x86_64&firmware=uefi&uuid=00000000-0000-0000-0000-02bf00000007"; u != want {
		t.Errorf("chain URL\n%s\nwant\n%s", u, want)
	}
	if _, err := m.chainURL([]byte("#!ipxe\necho hi\n")); err == nil {
		t.Error("a script without chain gave a URL")
	}
	k, initrds, ign, err := parseIPXE([]byte(machineScript))
	if err != nil {
		t.Fatal(err)
	}
	if k != "http://10.77.0.1:8080/assets/k?mac=52%3A54" || len(initrds) != 2 || initrds[1] != "http://10.77.0.1:8080/assets/b.gz?mac=52%3A54" ||
		ign != "http://10.77.0.1:8080/ignition?mac=52:54:00:00:00:05" {
		t.Errorf("parsed kernel %q initrds %q ignition %q", k, initrds, ign)
	}
	if _, _, _, err := parseIPXE([]byte("#!ipxe\nsanboot --drive 0x80\n")); err == nil {
		t.Error("a local-disk script gave a kernel")
	}
}

func TestParseIgnition(t *testing.T) {
	cfg := `{"ignition":{"version":"3.4.0"},"storage":{"files":[
	 {"path":"/etc/hostname","contents":{"source":"data:,node-1"}},
	 {"path":"/etc/bootfleet/agent.env","contents":{"source":"data:,BOOTFLEET_SERVER%3Dhttp%3A%2F%2F10.77.0.1%3A8080%0ABOOTFLEET_NODE%3D52%3A54%3A00%3A00%3A00%3A05%0ABOOTFLEET_TOKEN%3Dabc%0A"}},
	 {"path":"/opt/bootfleet/bin/bootfleet-agent","contents":{"source":"http://10.77.0.1:8080/agent/bootfleet-agent-amd64"}}]}}`
	env, remote, err := parseIgnition([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if env["BOOTFLEET_SERVER"] != "http://10.77.0.1:8080" || env["BOOTFLEET_NODE"] != "52:54:00:00:00:05" || env["BOOTFLEET_TOKEN"] != "abc" {
		t.Errorf("env %v", env)
	}
	if len(remote) != 1 || remote[0] != "http://10.77.0.1:8080/agent/bootfleet-agent-amd64" {
		t.Errorf("remote %v", remote)
	}
	b64 := strings.Replace(cfg, `data:,BOOTFLEET_SERVER%3Dhttp%3A%2F%2F10.77.0.1%3A8080%0ABOOTFLEET_NODE%3D52%3A54%3A00%3A00%3A00%3A05%0ABOOTFLEET_TOKEN%3Dabc%0A`, `data:;base64,Qk9PVEZMRUVUX1RPS0VOPXh5ego=`, 1)
	if env, _, err := parseIgnition([]byte(b64)); err != nil || env["BOOTFLEET_TOKEN"] != "xyz" {
		t.Errorf("base64 env %v %v", env, err)
	}
	if _, _, err := parseIgnition([]byte("not json")); err == nil {
		t.Error("non-JSON accepted")
	}
}

// Quantiles from Prometheus buckets interpolate inside the bucket, as
// histogram_quantile does.
func TestBucketQuantile(t *testing.T) {
	bounds := []float64{0.01, 0.1, 1, math.Inf(1)}
	cum := []float64{50, 90, 100, 100}
	if q := bucketQuantile(0.5, 100, bounds, cum); math.Abs(q-0.01) > 1e-9 {
		t.Errorf("p50 %v, want 0.01", q)
	}
	if q := bucketQuantile(0.7, 100, bounds, cum); math.Abs(q-0.055) > 1e-9 {
		t.Errorf("p70 %v, want 0.055", q)
	}
	if q := bucketQuantile(0.99, 100, bounds, []float64{0, 0, 0, 100}); !math.IsInf(q, 1) {
		t.Errorf("p99 beyond the top bucket %v, want +Inf (reported as above the top bucket)", q)
	}
}

func FuzzScripts(f *testing.F) {
	f.Add([]byte(bootScript))
	f.Add([]byte(machineScript))
	f.Add([]byte(`{"storage":{"files":[{"path":"/a/agent.env","contents":{"source":"data:;base64,%%"}}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := &machine{mac: net.HardwareAddr{2, 0, 0, 0, 0, 1}}
		m.chainURL(b)
		parseIPXE(b)
		parseIgnition(b)
	})
}

func TestErrGroup(t *testing.T) {
	for in, want := range map[string]string{
		"join: POST http://10.79.0.1:8080/api/v1/agent/02:bf:00:00:00:0c/join: 503 Service Unavailable: {\n  \"error\": \"fleet: lease for node 02:bf:00:00:00:0c: context deadline exceeded\"\n}": "join: POST http://10.79.0.1:8080/api/v1/agent/MAC/join: 503 Service Unavailable: { \"error\": \"fleet: lease for node MAC: context deadline exceeded\" }",
		"tftp: read udp [::]:35383: i/o timeout": "tftp: read udp:PORT: i/o timeout",
	} {
		if got := errGroup(in); got != want {
			t.Errorf("errGroup(%q)\n= %q\nwant %q", in, got, want)
		}
	}
}
