package dhcp

import (
	"slices"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Client is what a DHCP request says about the machine that sent it.
type Client struct {
	Arch        iana.Arch // option 93; iana.INTEL_X86PC when absent
	HasArch     bool
	VendorClass string   // option 60, e.g. PXEClient:Arch:00007:UNDI:003016
	UserClass   []string // option 77
	UUID        []byte   // option 97, echoed as PXE requires
}

// ClientOf reads a request.
func ClientOf(req *dhcpv4.DHCPv4) Client {
	c := Client{VendorClass: req.ClassIdentifier(), UserClass: req.UserClass(), UUID: req.GetOneOption(dhcpv4.OptionClientMachineIdentifier)}
	if archs := req.ClientArch(); len(archs) > 0 {
		c.Arch, c.HasArch = archs[0], true
	}
	return c
}

// IsIPXE reports whether the client is iPXE: its user class says "iPXE",
// or "Tinkerbell" (the user class of the iPXE builds bootfleet embeds).
func (c Client) IsIPXE() bool {
	return slices.ContainsFunc(c.UserClass, func(s string) bool { return s == "iPXE" || s == "Tinkerbell" })
}

// IsHTTPClient reports a UEFI HTTP boot client.
func (c Client) IsHTTPClient() bool { return strings.HasPrefix(c.VendorClass, "HTTPClient") }

// IsPXEClient reports PXE firmware.
func (c Client) IsPXEClient() bool { return strings.HasPrefix(c.VendorClass, "PXEClient") }

// IsNetboot reports whether the client wants boot information at all.
func (c Client) IsNetboot() bool { return c.IsIPXE() || c.IsHTTPClient() || c.IsPXEClient() }

// Firmware is "bios" or "uefi", from the architecture.
func (c Client) Firmware() string {
	if !c.HasArch || c.Arch == iana.INTEL_X86PC {
		return "bios"
	}
	return "uefi"
}

// MachineArch is x86_64 or arm64, from the architecture.
func (c Client) MachineArch() string {
	switch c.Arch {
	case iana.EFI_ARM64, iana.EFI_ARM64_HTTP:
		return "arm64"
	}
	return "x86_64"
}

// Boot is the boot information a client gets.
type Boot struct {
	// File is the boot file name (option 67 and the file field): a TFTP
	// file name or an http URL.
	File string
	// VendorClass is echoed in option 60 (PXEClient or HTTPClient); empty
	// for iPXE.
	VendorClass string
	// IPXE marks a reply to iPXE, which carries option 175 with no-pxedhcp.
	IPXE bool
}

// Binary names of the embedded iPXE builds.
const (
	FileBIOS      = "undionly.kpxe"
	FileUEFIx64   = "ipxe.efi"
	FileUEFIArm64 = "snp.efi"
)

// ChooseBoot picks the boot file for a client; ok is false for clients that
// are not network booting.
func ChooseBoot(c Client, b BootConfig) (Boot, bool) {
	switch {
	case c.IsIPXE():
		// iPXE asks again after loading: give it the script, never a binary.
		return Boot{File: b.IPXEScript, IPXE: true}, true
	case c.IsHTTPClient():
		name := FileUEFIx64
		if c.Arch == iana.EFI_ARM64_HTTP || c.Arch == iana.EFI_ARM64 {
			name = FileUEFIArm64
		}
		return Boot{File: b.HTTPBase + name, VendorClass: "HTTPClient"}, true
	case c.IsPXEClient():
		name := FileBIOS
		switch c.Arch {
		case iana.EFI_IA32, iana.EFI_X86_64, iana.EFI_BC:
			name = FileUEFIx64
		case iana.EFI_ARM64:
			name = FileUEFIArm64
		}
		return Boot{File: name, VendorClass: "PXEClient"}, true
	}
	return Boot{}, false
}

// ipxeNoPXEDHCP is option 175 (iPXE's encapsulated options) holding option
// 176 (no-pxedhcp) = 1: iPXE then does not wait for a proxyDHCP answer.
var ipxeNoPXEDHCP = []byte{176, 1, 1}

// pxeNoDiscovery is option 43 for PXE clients: suboption 6 (discovery
// control) = 8, boot from the boot file given, no boot server discovery.
var pxeNoDiscovery = []byte{6, 1, 8, 255}
