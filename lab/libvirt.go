package lab

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
)

// LibvirtNetwork is the name of the lab network in libvirt.
const LibvirtNetwork = "bootfleet-lab"

// LibvirtBridge is the host bridge libvirt makes for the lab network;
// serve bootfleet on it: bootfleet serve --dhcp full --interface bfbr0.
const LibvirtBridge = "bfbr0"

// LibvirtXML writes network.xml and one domain XML per node (node-N.xml)
// into out, for the same nodes the lab would start: an isolated network
// with no DHCP or DNS of libvirt's own (bootfleet serves DHCP), and VMs
// that boot from the network with the lab's firmware choices. It returns
// the files written.
func LibvirtXML(out string, nodes int, firmware string, memoryMiB int) ([]string, error) {
	if nodes < 1 {
		return nil, fmt.Errorf("lab: --nodes %d: want at least 1", nodes)
	}
	switch firmware {
	case FirmwareBIOS, FirmwareUEFI, FirmwareUEFIPXE, FirmwareMixed:
	default:
		return nil, fmt.Errorf("lab: --firmware %q: want bios, uefi, uefi-pxe or mixed", firmware)
	}
	if memoryMiB <= 0 {
		memoryMiB = 512
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	var network libvirtNetwork
	network.Name = LibvirtNetwork
	network.Bridge.Name, network.Bridge.STP = LibvirtBridge, "off"
	network.DNS.Enable = "no" // no dnsmasq from libvirt: bootfleet answers DHCP
	network.IP.Address, network.IP.Netmask = BridgeAddr, "255.255.255.0"
	files := []string{filepath.Join(out, "network.xml")}
	if err := writeXML(files[0], network, "isolated lab network for bootfleet; serve DHCP on bridge "+LibvirtBridge); err != nil {
		return nil, err
	}
	for i := range nodes {
		fw := firmware
		if fw == FirmwareMixed {
			fw = []string{FirmwareBIOS, FirmwareUEFI, FirmwareUEFIPXE}[i%3]
		}
		path := filepath.Join(out, fmt.Sprintf("node-%d.xml", i))
		if err := writeXML(path, domain(i, fw, memoryMiB), "lab node "+MAC(i)+" ("+fw+")"); err != nil {
			return nil, err
		}
		files = append(files, path)
	}
	return files, nil
}

type libvirtNetwork struct {
	XMLName xml.Name `xml:"network"`
	Name    string   `xml:"name"`
	Bridge  struct {
		Name string `xml:"name,attr"`
		STP  string `xml:"stp,attr"`
	} `xml:"bridge"`
	DNS struct {
		Enable string `xml:"enable,attr"`
	} `xml:"dns"`
	IP struct {
		Address string `xml:"address,attr"`
		Netmask string `xml:"netmask,attr"`
	} `xml:"ip"`
}

type attrAddress struct {
	Address string `xml:"address,attr"`
}

type libvirtInterface struct {
	Type   string      `xml:"type,attr"`
	MAC    attrAddress `xml:"mac"`
	Source struct {
		Network string `xml:"network,attr"`
	} `xml:"source"`
	Model struct {
		Type string `xml:"type,attr"`
	} `xml:"model"`
	ROM *struct {
		Enabled string `xml:"enabled,attr"`
	} `xml:"rom,omitempty"`
}

type libvirtDomain struct {
	XMLName xml.Name `xml:"domain"`
	Type    string   `xml:"type,attr"`
	Name    string   `xml:"name"`
	Memory  struct {
		Unit  string `xml:"unit,attr"`
		Value int    `xml:",chardata"`
	} `xml:"memory"`
	VCPU int `xml:"vcpu"`
	OS   struct {
		Firmware string `xml:"firmware,attr,omitempty"`
		Type     struct {
			Arch    string `xml:"arch,attr"`
			Machine string `xml:"machine,attr"`
			Value   string `xml:",chardata"`
		} `xml:"type"`
		Boot struct {
			Dev string `xml:"dev,attr"`
		} `xml:"boot"`
	} `xml:"os"`
	OnReboot string `xml:"on_reboot"`
	Devices  struct {
		Interface libvirtInterface `xml:"interface"`
		Serial    struct {
			Type string `xml:"type,attr"`
		} `xml:"serial"`
		Console struct {
			Type   string `xml:"type,attr"`
			Target struct {
				Type string `xml:"type,attr"`
			} `xml:"target"`
		} `xml:"console"`
	} `xml:"devices"`
}

func domain(i int, fw string, memoryMiB int) libvirtDomain {
	var d libvirtDomain
	d.Type = "kvm"
	d.Name = fmt.Sprintf("bootfleet-lab-%d", i)
	d.Memory.Unit, d.Memory.Value = "MiB", memoryMiB
	d.VCPU = 1
	d.OS.Type.Arch, d.OS.Type.Machine, d.OS.Type.Value = "x86_64", "pc", "hvm"
	if fw != FirmwareBIOS {
		d.OS.Firmware, d.OS.Type.Machine = "efi", "q35"
	}
	d.OS.Boot.Dev = "network"
	d.OnReboot = "restart"
	nic := &d.Devices.Interface
	nic.Type = "network"
	nic.MAC.Address = MAC(i)
	nic.Source.Network = LibvirtNetwork
	nic.Model.Type = "virtio"
	if fw == FirmwareUEFIPXE {
		// No iPXE ROM: the firmware's own PXE, as on a real server.
		nic.ROM = &struct {
			Enabled string `xml:"enabled,attr"`
		}{Enabled: "no"}
	}
	d.Devices.Serial.Type = "pty"
	d.Devices.Console.Type = "pty"
	d.Devices.Console.Target.Type = "serial"
	return d
}

func writeXML(path string, v any, comment string) error {
	var b bytes.Buffer
	b.WriteString("<!-- " + comment + " -->\n")
	enc := xml.NewEncoder(&b)
	enc.Indent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	b.WriteByte('\n')
	return os.WriteFile(path, b.Bytes(), 0o644)
}
