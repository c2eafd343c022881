// Package releases is the table of published ConPaaS artifacts and their
// MD5s, as listed in the ConPaaS installation guides (2.1.0 and the later
// guide), so `cpsimage verify FILE` can check a download offline.
//
// The later guide gives MD5s and sizes but its download links are gone from
// the text: those entries have no file name and are found by MD5 only.
// Nothing here is invented: a value the guides do not give is empty.
package releases

import (
	"path/filepath"
	"strings"
)

// Artifact is one published download.
type Artifact struct {
	Release     string // "2.1.0" or "later" (the guide after 2.1.0)
	What        string // the guide's description
	File        string // download file name; "" when the guide gives none
	URL         string // "" when the guide gives none
	MD5         string
	SizeApprox  string // as the guide prints it, e.g. "481 MB"
	Kind        string // raw | sdcard | ova | lxc (what is inside)
	Arch        string
	Compression string // "tar.gz" or ""
}

// Table lists every artifact of both guides.
var Table = []Artifact{
	{Release: "2.1.0", What: "ConPaaS VM image for Amazon EC2 (x86_64)", File: "conpaas-2.1.0-amazon.img.tar.gz",
		URL: "http://www.conpaas.eu/dl/conpaas-2.1.0-amazon.img.tar.gz", MD5: "c6017f277f01777121dae3f2fb085e92", SizeApprox: "481 MB", Kind: "raw", Arch: "amd64", Compression: "tar.gz"},
	{Release: "2.1.0", What: "ConPaaS VM image for OpenStack with KVM (x86_64)", File: "conpaas-2.1.0-openstack-kvm.img.tar.gz",
		URL: "http://www.conpaas.eu/dl/conpaas-2.1.0-openstack-kvm.img.tar.gz", MD5: "495098f986b8a059041e4e0063bb20c4", SizeApprox: "480 MB", Kind: "raw", Arch: "amd64", Compression: "tar.gz"},
	{Release: "2.1.0", What: "ConPaaS VM image for OpenStack with LXC (x86_64)", File: "conpaas-2.1.0-openstack-lxc.img.tar.gz",
		URL: "http://www.conpaas.eu/dl/conpaas-2.1.0-openstack-lxc.img.tar.gz", MD5: "24d67aa77aa1e6a2b3a74c1b291579e6", SizeApprox: "449 MB", Kind: "lxc", Arch: "amd64", Compression: "tar.gz"},
	{Release: "2.1.0", What: "ConPaaS VM image for OpenStack with LXC for the Raspberry Pi (arm)", File: "conpaas-rpi.img",
		URL: "http://www.conpaas.eu/dl/ConPaaS-RPI/conpaas-rpi.img", MD5: "c29cd086e8e0ebe7f0793e7d54304da4", SizeApprox: "2.0 GB", Kind: "lxc", Arch: "armhf"},
	{Release: "2.1.0", What: "VirtualBox VM containing ConPaaS in a Nutshell", File: "ConPaaS-Nutshell-2.1.0.ova",
		URL: "http://www.conpaas.eu/dl/ConPaaS-Nutshell-2.1.0.ova", MD5: "81ef97d50c9f2cd6d029e5213a7a5d2a", SizeApprox: "2.5 GB", Kind: "ova", Arch: "amd64"},
	{Release: "2.1.0", What: "RPI's SD card image", File: "ConPaaS-RPI-SDCard-32G.img.tar.gz",
		URL: "http://www.conpaas.eu/dl/ConPaaS-RPI/ConPaaS-RPI-SDCard-32G.img.tar.gz", MD5: "b49a33dac4c6bdba9417b4feef1cd2aa", SizeApprox: "4.7 GB", Kind: "sdcard", Arch: "armhf", Compression: "tar.gz"},
	{Release: "2.1.0", What: "VirtualBox VM containing the backend server", File: "ConPaaS-RPI-Backend-VM.ova",
		URL: "http://www.conpaas.eu/dl/ConPaaS-RPI/ConPaaS-RPI-Backend-VM.ova", MD5: "0e6022423b3f940c73204320a5f4f669", SizeApprox: "7.4 GB", Kind: "ova", Arch: "amd64"},

	{Release: "later", What: "ConPaaS VM image for Amazon EC2 (x86_64)", MD5: "2d2af415a29c8413b898eacfcc2f1343", SizeApprox: "541 MB", Kind: "raw", Arch: "amd64"},
	{Release: "later", What: "ConPaaS VM image for OpenStack with KVM (x86_64)", MD5: "02ea7ef89ff81bf03668003a8d2feac6", SizeApprox: "541 MB", Kind: "raw", Arch: "amd64"},
	{Release: "later", What: "ConPaaS VM image for OpenStack with LXC (x86_64)", MD5: "f04e9dcc3059c5d10f599e72243055d3", SizeApprox: "509 MB", Kind: "lxc", Arch: "amd64"},
	{Release: "later", What: "ConPaaS VM image for OpenStack with LXC for the Raspberry Pi (arm)", MD5: "1eb2b8b369af3940460f85b12642f2e1", SizeApprox: "528 MB", Kind: "lxc", Arch: "armhf"},
	{Release: "later", What: "VirtualBox VM containing ConPaaS in a Nutshell", MD5: "9b01b07c1d0c45266345085cf65890ab", SizeApprox: "2.5 GB", Kind: "ova", Arch: "amd64"},
	// The later guide lists the RPi SD card image (2.4 GB) without an MD5.
	{Release: "later", What: "RPI's SD card image", SizeApprox: "2.4 GB", Kind: "sdcard", Arch: "armhf"},
	{Release: "later", What: "VirtualBox VM containing the backend server", MD5: "b469741091f8e282b3e22635963f5783", SizeApprox: "2.7 GB", Kind: "ova", Arch: "amd64"},
}

// ByFile returns the published artifact with the file name of path.
func ByFile(path string) *Artifact {
	base := filepath.Base(path)
	for i := range Table {
		if Table[i].File != "" && Table[i].File == base {
			return &Table[i]
		}
	}
	return nil
}

// ByMD5 returns the published artifact with that MD5.
func ByMD5(md5 string) *Artifact {
	md5 = strings.ToLower(md5)
	for i := range Table {
		if Table[i].MD5 != "" && Table[i].MD5 == md5 {
			return &Table[i]
		}
	}
	return nil
}
