package ova

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"text/template"

	"github.com/conpaas/cps/plan"
)

// vboxOSIDs maps VirtualBox ostype to the CIM OperatingSystemSection id
// VirtualBox itself writes (96 = Debian 64-bit, 95 = Debian, 101 = Linux
// 64-bit).
var vboxOSIDs = map[string]int{"Debian_64": 96, "Debian": 95, "Linux_64": 101, "Linux26_64": 101, "Ubuntu_64": 94}

type ovfData struct {
	VM        *plan.VM
	OSID      int
	DiskFile  string
	DiskBytes int64    // size of the .vmdk file
	Capacity  int64    // virtual disk size, bytes
	Populated int64    // data bytes
	Networks  []string // each network once, for the NetworkSection
	NICNets   []string // the network of each NIC, in order
	Version   string
}

// esc escapes text for XML attribute and element content.
func esc(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

var ovfTmpl = template.Must(template.New("ovf").Funcs(template.FuncMap{"esc": esc, "inc": func(i int) int { return i + 1 }}).Parse(`<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by cps (cpsimage build). -->
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References>
    <File ovf:id="file1" ovf:href="{{esc .DiskFile}}" ovf:size="{{.DiskBytes}}"/>
  </References>
  <DiskSection>
    <Info>List of the virtual disks used in the package</Info>
    <Disk ovf:capacity="{{.Capacity}}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized" ovf:populatedSize="{{.Populated}}"/>
  </DiskSection>
  <NetworkSection>
    <Info>Logical networks used in the package</Info>
{{- range .Networks}}
    <Network ovf:name="{{esc .}}">
      <Description>Logical network used by this appliance.</Description>
    </Network>
{{- end}}
  </NetworkSection>
  <VirtualSystem ovf:id="{{esc .VM.Name}}">
    <Info>A virtual machine</Info>
    <ProductSection>
      <Info>Meta-information about the installed software</Info>
      <Product>ConPaaS</Product>
      <Vendor>ConPaaS</Vendor>
      <Version>{{esc .Version}}</Version>
    </ProductSection>
    <OperatingSystemSection ovf:id="{{.OSID}}">
      <Info>The kind of installed guest operating system</Info>
      <Description>{{esc .VM.OSType}}</Description>
      <vbox:OSType ovf:required="false">{{esc .VM.OSType}}</vbox:OSType>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements for a virtual machine</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{{esc .VM.Name}}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>virtualbox-2.2</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:Caption>{{.VM.CPUs}} virtual CPU</rasd:Caption>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>{{.VM.CPUs}} virtual CPU</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{{.VM.CPUs}}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits>
        <rasd:Caption>{{.VM.MemoryMiB}} MB of memory</rasd:Caption>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>{{.VM.MemoryMiB}} MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{{.VM.MemoryMiB}}</rasd:VirtualQuantity>
      </Item>
{{- if eq .VM.DiskController "ide"}}
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Caption>ideController0</rasd:Caption>
        <rasd:Description>IDE Controller</rasd:Description>
        <rasd:ElementName>ideController0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>PIIX4</rasd:ResourceSubType>
        <rasd:ResourceType>5</rasd:ResourceType>
      </Item>
{{- else}}
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Caption>sataController0</rasd:Caption>
        <rasd:Description>SATA Controller</rasd:Description>
        <rasd:ElementName>sataController0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>AHCI</rasd:ResourceSubType>
        <rasd:ResourceType>20</rasd:ResourceType>
      </Item>
{{- end}}
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:Caption>disk1</rasd:Caption>
        <rasd:Description>Disk Image</rasd:Description>
        <rasd:ElementName>disk1</rasd:ElementName>
        <rasd:HostResource>/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
{{- range $i, $n := .VM.NICs}}
      <Item>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Caption>Ethernet adapter on '{{esc (index $.NICNets $i)}}'</rasd:Caption>
        <rasd:Connection>{{esc (index $.NICNets $i)}}</rasd:Connection>
        <rasd:ElementName>Ethernet adapter on '{{esc (index $.NICNets $i)}}'</rasd:ElementName>
        <rasd:InstanceID>{{inc (inc (inc (inc (inc $i))))}}</rasd:InstanceID>
        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
{{- end}}
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`))

// networkName is the OVF network name of a NIC, as VirtualBox exports it.
func networkName(n plan.NIC) string {
	switch n.Type {
	case "nat":
		return "NAT"
	case "hostonly":
		return "HostOnly"
	case "bridged":
		return "Bridged"
	case "intnet":
		return "Internal"
	}
	return n.Type
}

// renderOVF returns the descriptor.
func renderOVF(vm *plan.VM, version, diskFile string, diskBytes, capacity, populated int64) ([]byte, error) {
	id, ok := vboxOSIDs[vm.OSType]
	if !ok {
		id = 101
	}
	d := ovfData{VM: vm, OSID: id, DiskFile: diskFile, DiskBytes: diskBytes, Capacity: capacity, Populated: populated, Version: version}
	seen := map[string]bool{}
	for _, n := range vm.NICs {
		name := networkName(n)
		d.NICNets = append(d.NICNets, name)
		if !seen[name] {
			seen[name] = true
			d.Networks = append(d.Networks, name)
		}
	}
	var b bytes.Buffer
	if err := ovfTmpl.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("render OVF: %w", err)
	}
	return b.Bytes(), nil
}
