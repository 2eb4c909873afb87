// Package lab runs a PXE lab on one machine: a network namespace with a
// bridge and one tap per VM, bootfleet serving DHCP, TFTP and HTTP on the
// bridge, and QEMU VMs (BIOS, UEFI with the NIC's iPXE ROM, or UEFI native
// PXE) that boot from it. Everything it makes is recorded in a state file
// in the lab directory, so Down removes it all, also after a crash.
package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Firmware kinds of lab VMs.
const (
	FirmwareBIOS    = "bios"     // SeaBIOS, the NIC's iPXE option ROM, then HTTP
	FirmwareUEFI    = "uefi"     // OVMF running the NIC's iPXE ROM
	FirmwareUEFIPXE = "uefi-pxe" // OVMF's own PXE: DHCP, TFTP ipxe.efi, then iPXE and HTTP (a real server's path)
	FirmwareMixed   = "mixed"    // one of each, in turn
)

// Network of every lab (inside its own namespace, so labs never clash).
const (
	BridgeAddr = "10.77.0.1"
	ServerURL  = "http://10.77.0.1:8080"
)

// Config configures a lab.
type Config struct {
	// Dir holds the state file, the server's data and profiles, the VMs'
	// firmware variables and their serial consoles (vm-N.log).
	Dir      string
	Nodes    int
	Firmware string
	// Strangers are extra BIOS VMs whose MACs no group selects: the lab's
	// group then names its nodes' MACs, and the strangers show how
	// bootfleet refuses a machine it does not know.
	Strangers int
	// Bootfleet is the bootfleet binary the lab serves with; the agent
	// binaries are expected next to it.
	Bootfleet string
	// Image holds vmlinuz and initrd.img (bootfleet images build-lab).
	Image string
	// Accel is tcg, kvm or auto (kvm only when a probe boot works).
	Accel  string
	Memory int // MiB per VM; default 512
	Log    *slog.Logger
}

// Node is one VM of the lab.
type Node struct {
	MAC      string `json:"mac"`
	Firmware string `json:"firmware"`
	Tap      string `json:"tap"`
	Console  string `json:"console"` // serial log file
	PID      int    `json:"pid"`
	// Stranger: no group selects this VM's MAC.
	Stranger bool `json:"stranger,omitempty"`
	// ReadyAt is when lab up first saw the image's ready marker on the
	// console, since the lab started (a console has no clock of its
	// own); kept here for lab status in other processes.
	ReadyAt time.Duration `json:"ready_at,omitempty"`
}

// State is what a lab made; it is written before anything is started, and
// updated as things start.
type State struct {
	Dir       string    `json:"dir"`
	Netns     string    `json:"netns"`
	ServerPID int       `json:"server_pid"`
	Accel     string    `json:"accel"`
	Nodes     []Node    `json:"nodes"`
	Started   time.Time `json:"started"`
}

const stateFile = "lab.json"

// Netns is the namespace name of the lab in dir: stable per directory.
func Netns(dir string) string {
	abs, _ := filepath.Abs(dir)
	sum := sha256.Sum256([]byte(abs))
	return "bf-lab-" + hex.EncodeToString(sum[:4])
}

// MAC is the MAC of lab node i (0-based).
func MAC(i int) string { return fmt.Sprintf("52:54:00:bf:%02x:%02x", (i+1)>>8, (i+1)&0xff) }

// Up makes the lab and starts its server and VMs. On error, whatever was
// made is removed again.
func Up(ctx context.Context, cfg Config) (st *State, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("lab: needs root (network namespaces, taps and QEMU); run it as root")
	}
	if cfg.Nodes < 1 || cfg.Nodes > 200 {
		return nil, fmt.Errorf("lab: --nodes %d: want 1 to 200", cfg.Nodes)
	}
	if cfg.Strangers < 0 || cfg.Strangers > 50 {
		return nil, fmt.Errorf("lab: --strangers %d: want 0 to 50", cfg.Strangers)
	}
	if cfg.Memory <= 0 {
		cfg.Memory = 512
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	switch cfg.Firmware {
	case FirmwareBIOS, FirmwareUEFI, FirmwareUEFIPXE, FirmwareMixed:
	default:
		return nil, fmt.Errorf("lab: --firmware %q: want bios, uefi, uefi-pxe or mixed", cfg.Firmware)
	}
	for _, tool := range []string{"ip", "qemu-system-x86_64"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("lab: %s is not installed (Debian: iproute2, qemu-system-x86, ipxe-qemu, ovmf)", tool)
		}
	}
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		if _, err := os.Stat(filepath.Join(cfg.Image, f)); err != nil {
			return nil, fmt.Errorf("lab: image %s: %w (build it with bootfleet images build-lab --out %s)", cfg.Image, err, cfg.Image)
		}
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if old, err := ReadState(dir); err == nil && old.Netns != "" {
		cfg.Log.Warn("a lab was left in this directory; removing it first", "dir", dir)
		if err := Down(dir, cfg.Log); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	st = &State{Dir: dir, Netns: Netns(dir), Started: time.Now().UTC()}
	for i := range cfg.Nodes {
		fw := cfg.Firmware
		if fw == FirmwareMixed {
			fw = []string{FirmwareBIOS, FirmwareUEFI, FirmwareUEFIPXE}[i%3]
		}
		st.Nodes = append(st.Nodes, Node{MAC: MAC(i), Firmware: fw, Tap: fmt.Sprintf("tap%d", i), Console: filepath.Join(dir, fmt.Sprintf("vm-%d.log", i))})
	}
	for j := range cfg.Strangers {
		i := cfg.Nodes + j
		st.Nodes = append(st.Nodes, Node{MAC: fmt.Sprintf("52:54:00:bf:ff:%02x", j+1), Firmware: FirmwareBIOS, Tap: fmt.Sprintf("tap%d", i),
			Console: filepath.Join(dir, fmt.Sprintf("vm-%d.log", i)), Stranger: true})
	}
	if err := st.save(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = Down(dir, cfg.Log)
		}
	}()

	if err := makeNetwork(st); err != nil {
		return nil, err
	}
	var members []string
	if cfg.Strangers > 0 {
		for _, n := range st.Nodes {
			if !n.Stranger {
				members = append(members, n.MAC)
			}
		}
	}
	profiles, err := writeProfiles(dir, cfg.Image, members)
	if err != nil {
		return nil, err
	}
	if st.ServerPID, err = startServer(ctx, st, cfg, profiles); err != nil {
		return nil, err
	}
	if err := st.save(); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, st.Netns, ServerURL+"/healthz", 30*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		return nil, fmt.Errorf("lab: bootfleet did not come up: %w\n%s", err, tail(string(log), 20))
	}
	st.Accel = chooseAccel(ctx, cfg)
	cfg.Log.Info("lab network and server up", "netns", st.Netns, "server", ServerURL, "accel", st.Accel)
	for i := range st.Nodes {
		pid, err := startVM(st, &st.Nodes[i], cfg.Memory)
		if err != nil {
			return nil, err
		}
		st.Nodes[i].PID = pid
		if err := st.save(); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func (st *State) save() error {
	b, _ := json.MarshalIndent(st, "", "  ")
	tmp := filepath.Join(st.Dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("lab: state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(st.Dir, stateFile))
}

// ReadState reads the state of the lab in dir.
func ReadState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("lab: state %s: %w", filepath.Join(dir, stateFile), err)
	}
	return &st, nil
}

func ipCmd(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// makeNetwork creates the namespace, its bridge and one tap per VM.
func makeNetwork(st *State) error {
	ns := st.Netns
	steps := [][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "add", "br0", "type", "bridge"},
		{"-n", ns, "addr", "add", BridgeAddr + "/24", "dev", "br0"},
		{"-n", ns, "link", "set", "br0", "up"},
	}
	for _, n := range st.Nodes {
		steps = append(steps,
			[]string{"-n", ns, "tuntap", "add", "dev", n.Tap, "mode", "tap"},
			[]string{"-n", ns, "link", "set", n.Tap, "master", "br0", "up"})
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			return fmt.Errorf("lab: network: %w", err)
		}
	}
	return nil
}

// writeProfiles writes the lab's profiles directory: the nodes boot the
// lab image, with an Ignition config that names them. With members, the
// group selects only those MACs; else it is the default group.
func writeProfiles(dir, image string, members []string) (string, error) {
	p := filepath.Join(dir, "profiles")
	group := "# Every lab VM boots the lab image.\nname: lab\nprofile: lab-node\nmetadata:\n  role: lab\n"
	if len(members) > 0 {
		group = "# The lab's VMs by MAC; any other machine is refused.\nname: lab\nprofile: lab-node\nselector:\n  mac: [\"" +
			strings.Join(members, "\", \"") + "\"]\nmetadata:\n  role: lab\n"
	}
	files := map[string]string{
		"groups/lab.yaml": group,
		"profiles/lab-node.yaml": `name: lab-node
boot:
  kernel: /assets/lab/vmlinuz
  initrd: [/assets/lab/initrd.img]
  args: ["console=ttyS0", "panic=10"]
ignition: node.bu
`,
		"ignition/node.bu": `variant: fcos
version: 1.5.0
storage:
  files:
    - path: /etc/hostname
      mode: 0644
      contents:
        inline: "lab-{{.MAC}}"
`,
	}
	for name, content := range files {
		path := filepath.Join(p, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	assets := filepath.Join(p, "assets", "lab")
	if err := os.MkdirAll(assets, 0o755); err != nil {
		return "", err
	}
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		if err := copyFile(filepath.Join(image, f), filepath.Join(assets, f)); err != nil {
			return "", err
		}
	}
	return p, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst + ".tmp")
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(dst+".tmp", dst)
}

// startServer runs bootfleet serve inside the namespace: DHCP (full, with
// router advertisements) and TFTP on the bridge, HTTP on its address.
func startServer(ctx context.Context, st *State, cfg Config, profiles string) (int, error) {
	logf, err := os.Create(filepath.Join(st.Dir, "server.log"))
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	args := []string{"netns", "exec", st.Netns, cfg.Bootfleet, "serve",
		"--profiles", profiles, "--data-dir", filepath.Join(st.Dir, "data"),
		"--http", BridgeAddr + ":8080", "--public-url", ServerURL,
		"--dhcp", "full", "--interface", "br0", "--dhcp-pool-start", "10.77.0.100", "--dhcp-pool-end", "10.77.0.250",
		"--dhcp-router", BridgeAddr, "--agent-dir", filepath.Dir(cfg.Bootfleet)}
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C is for lab up; Down stops it
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("lab: start bootfleet: %w", err)
	}
	go cmd.Wait() //nolint:errcheck // reaped; Down stops it
	return cmd.Process.Pid, nil
}

// qemuArgs are the VM's QEMU arguments.
func qemuArgs(st *State, n Node, memory int) ([]string, error) {
	args := []string{"-accel", st.Accel, "-m", fmt.Sprint(memory), "-smp", "1",
		"-display", "none", "-monitor", "none", "-no-reboot", "-serial", "file:" + n.Console,
		"-netdev", "tap,id=n0,ifname=" + n.Tap + ",script=no,downscript=no"}
	nic := "virtio-net-pci,netdev=n0,mac=" + n.MAC + ",bootindex=1"
	switch n.Firmware {
	case FirmwareBIOS:
		args = append([]string{"-machine", "pc", "-boot", "n"}, args...)
	case FirmwareUEFI, FirmwareUEFIPXE:
		code := "/usr/share/OVMF/OVMF_CODE_4M.fd"
		vars := filepath.Join(st.Dir, "vars-"+strings.ReplaceAll(n.MAC, ":", "")+".fd")
		if _, err := os.Stat(code); err != nil {
			return nil, errors.New("lab: OVMF is not installed (Debian package ovmf)")
		}
		if err := copyFile("/usr/share/OVMF/OVMF_VARS_4M.fd", vars); err != nil {
			return nil, fmt.Errorf("lab: OVMF variables: %w", err)
		}
		args = append([]string{"-machine", "q35",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + code,
			"-drive", "if=pflash,format=raw,unit=1,file=" + vars}, args...)
		if n.Firmware == FirmwareUEFIPXE {
			nic += ",romfile=" // no iPXE ROM: the firmware's own PXE, as on a real server
		}
	}
	return append(args, "-device", nic), nil
}

func startVM(st *State, n *Node, memory int) (int, error) {
	args, err := qemuArgs(st, *n, memory)
	if err != nil {
		return 0, err
	}
	_ = os.Remove(n.Console)
	errf, err := os.Create(strings.TrimSuffix(n.Console, ".log") + ".qemu.log")
	if err != nil {
		return 0, err
	}
	defer errf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", st.Netns, "qemu-system-x86_64"}, args...)...)
	cmd.Stdout, cmd.Stderr = errf, errf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("lab: start VM %s: %w", n.MAC, err)
	}
	go cmd.Wait() //nolint:errcheck // reaped; Down stops it
	return cmd.Process.Pid, nil
}

// chooseAccel picks the accelerator: TCG unless asked otherwise; with
// auto, KVM only when a short probe boot of the lab kernel under KVM
// reaches the image's init (a /dev/kvm can exist and still fail guests,
// see LAB.md).
func chooseAccel(ctx context.Context, cfg Config) string {
	switch cfg.Accel {
	case "kvm", "tcg":
		return cfg.Accel
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return "tcg"
	}
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	log := filepath.Join(cfg.Dir, "kvm-probe.log")
	_ = os.Remove(log)
	cmd := exec.CommandContext(pctx, "qemu-system-x86_64", "-accel", "kvm", "-m", "256", "-display", "none", "-monitor", "none",
		"-no-reboot", "-nic", "none", "-serial", "file:"+log,
		"-kernel", filepath.Join(cfg.Image, "vmlinuz"), "-initrd", filepath.Join(cfg.Image, "initrd.img"), "-append", "console=ttyS0 panic=-1")
	if err := cmd.Start(); err != nil {
		return "tcg"
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	for pctx.Err() == nil {
		if b, _ := os.ReadFile(log); strings.Contains(string(b), "bootfleet-lab:") {
			cfg.Log.Info("KVM probe boot reached the lab image's init; using KVM")
			return "kvm"
		}
		time.Sleep(200 * time.Millisecond)
	}
	cfg.Log.Info("KVM probe boot did not reach the lab image's init in 20s; using TCG")
	return "tcg"
}

// Down stops everything the lab in dir made: its VMs, its server, its
// namespace (with the bridge and taps), and any process still running
// from the lab directory. It is safe to run again.
func Down(dir string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, _ = filepath.Abs(dir)
	st, err := ReadState(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var pids []int
	ns := Netns(dir)
	if st != nil {
		for _, n := range st.Nodes {
			pids = append(pids, n.PID)
		}
		pids = append(pids, st.ServerPID)
		if st.Netns != "" {
			ns = st.Netns
		}
	}
	// A PID from the state file is ours only while its command line still
	// names the lab dir: after a crash and a reboot it may be anyone's.
	ours := func(pid int) bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		return err == nil && strings.Contains(string(b), dir+"/")
	}
	live := pids[:0]
	for _, pid := range pids {
		if pid > 0 && ours(pid) {
			live = append(live, pid)
		}
	}
	pids = live
	for _, pid := range pids {
		_ = syscall.Kill(-pid, syscall.SIGTERM) // its process group
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for ours(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	killFrom(dir)
	if err := exec.Command("ip", "netns", "pids", ns).Run(); err == nil {
		if out, _ := exec.Command("ip", "netns", "pids", ns).Output(); len(out) > 0 {
			for _, f := range strings.Fields(string(out)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if err := ipCmd("netns", "del", ns); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	if err := os.Remove(filepath.Join(dir, stateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	log.Info("lab down", "dir", dir, "netns", ns)
	return nil
}

// killFrom kills any process whose command line names the lab dir (a VM
// or server a crashed lab up left without a state entry).
func killFrom(dir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), dir+"/") {
			continue
		}
		var pid int
		if _, err := fmt.Sscan(filepath.Base(filepath.Dir(p)), &pid); err == nil && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
