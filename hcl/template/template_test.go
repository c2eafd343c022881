package template

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/plan"
)

const good = `
variable "mirror" {
  type    = string
  default = "http://deb.debian.org/debian"
}
variable "cpus" {
  type    = number
  default = 2
}
locals {
  pkgs  = concat(local.base, ["nginx"])
  base  = ["openssh-server"]
  label = upper("conpaas")
}
image "conpaas" {
  kind    = "raw"
  version = "2.1.0"
  size    = "2GiB"
  distribution {
    mirror   = var.mirror
    packages = local.pkgs
  }
  partition "bios" {
    fs   = "bios_grub"
    size = "1MiB"
  }
  partition "root" {
    fs    = "ext4"
    size  = "*"
    mount = "/"
    label = lower(local.label)
  }
  bootloader {
    type = "grub"
    bios = true
  }
  provisioner "shell" {
    inline = ["echo hi"]
  }
}
image "rpi" {
  kind = "sdcard"
}
image "lxc" {
  kind = "lxc"
}
image "carrier" {
  kind = "raw"
  provisioner "file" {
    image       = "lxc"
    destination = "/var/lib/lxc.img"
  }
}
image "nutshell" {
  kind   = "ova"
  source = "conpaas"
  vm {
    cpus   = var.cpus
    memory = 4096
    nic { type = "nat" }
    nic {
      type    = "hostonly"
      network = "vboxnet0"
    }
  }
}
register "glance" {
  target = "glance"
  image  = "conpaas"
  cloud  = "devstack"
}
register "s3" {
  target      = "ec2-s3"
  image       = "conpaas"
  bucket      = "conpaas-images/2.1.0"
  account_id  = "123456789012"
  cert        = "keys/cert.pem"
  private_key = "keys/pk.pem"
  ec2_cert    = "/etc/ec2/amitools/cert-ec2.pem"
}
`

func load(t *testing.T, src string, opt Options) (*plan.Plan, error) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "t.pkr.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return Load(path, opt)
}

func TestLoadGood(t *testing.T) {
	p, err := load(t, good, Options{Vars: map[string]string{"cpus": "4"}})
	if err != nil {
		t.Fatal(err)
	}
	img := p.Image("conpaas")
	if img == nil || img.Size != 2<<30 || img.Arch != "amd64" || img.PartitionTable != "gpt" || img.Alignment != 1<<20 {
		t.Fatalf("raw image = %+v", img)
	}
	if got := strings.Join(img.Distribution.Packages, ","); got != "openssh-server,nginx" {
		t.Errorf("packages = %s", got)
	}
	if img.Partitions[1].Size != 0 || img.Partitions[1].Label != "conpaas" || img.Partitions[0].Size != 1<<20 {
		t.Errorf("partitions = %+v", img.Partitions)
	}
	if strings.Join(img.Checksums, ",") != "md5,sha256" {
		t.Errorf("default checksums = %v", img.Checksums)
	}
	rpi := p.Image("rpi")
	if rpi.Size != 31998345216 || rpi.Alignment != 4<<20 || rpi.PartitionTable != "mbr" || rpi.Arch != "arm64" {
		t.Errorf("sdcard defaults = %+v", rpi)
	}
	if lxc := p.Image("lxc"); lxc.Size != 2<<30 || lxc.PartitionTable != "" || lxc.Alignment != 0 || len(lxc.Partitions) != 0 {
		t.Errorf("lxc defaults = %+v", lxc)
	}
	if pr := p.Image("carrier").Provisioners; len(pr) != 1 || pr[0].Image != "lxc" || pr[0].Source != "" {
		t.Errorf("file provisioner of an image = %+v", pr)
	}
	ova := p.Image("nutshell")
	if ova.VM == nil || ova.VM.CPUs != 4 || ova.VM.MemoryMiB != 4096 || len(ova.VM.NICs) != 2 || ova.VM.NICs[1].Network != "vboxnet0" {
		t.Errorf("ova vm = %+v", ova.VM)
	}
	if len(p.Registers) != 2 || p.Registers[0].DiskFormat != "" || p.Registers[0].ContainerFormat != "" {
		t.Errorf("register = %+v", p.Registers)
	}
	if s3 := p.Registers[len(p.Registers)-1]; s3.Method != "bundle" || s3.Cert != filepath.Join(p.Dir, "keys/cert.pem") || s3.EC2Cert != "/etc/ec2/amitools/cert-ec2.pem" || s3.AccountID != "123456789012" {
		t.Errorf("ec2-s3 register = %+v", s3)
	}
	if len(p.InputsDigest) != 64 {
		t.Errorf("inputs digest %q", p.InputsDigest)
	}
	// The digest follows the variables.
	p2, _ := load(t, good, Options{Vars: map[string]string{"cpus": "8"}})
	if p2.InputsDigest == p.InputsDigest {
		t.Error("a different variable value must change the inputs digest")
	}
	p3, _ := load(t, good, Options{Environ: []string{"CPS_VAR_cpus=4"}})
	if p3.InputsDigest != p.InputsDigest {
		t.Error("CPS_VAR_cpus=4 and -var cpus=4 must give the same plan")
	}
}

// TestBadInput: every error names file:line:col of the culprit.
func TestBadInput(t *testing.T) {
	cases := []struct {
		name, src string
		opt       Options
		want      []string // substrings of the message
	}{
		{"unknown block", "imagex \"a\" {}\n", Options{}, []string{"t.pkr.hcl:1:1:", "Unsupported block type"}},
		{"unknown attribute", "image \"a\" {\n  kind = \"raw\"\n  colour = \"red\"\n}\n", Options{}, []string{"t.pkr.hcl:3:3:", "Unsupported argument"}},
		{"wrong type", "image \"a\" {\n  kind = \"raw\"\n  checksums = 5\n}\n", Options{}, []string{"t.pkr.hcl:3:15:", "list of string required"}},
		{"undefined variable", "image \"a\" {\n  kind = \"raw\"\n  version = var.nope\n}\n", Options{}, []string{"t.pkr.hcl:3:16:", "Unsupported attribute"}},
		{"bad kind", "image \"a\" {\n  kind = \"iso\"\n}\n", Options{}, []string{"t.pkr.hcl:2:10:", `"kind" is "iso"`}},
		{"bad size", "image \"a\" {\n  kind = \"raw\"\n  size = \"2 parsecs\"\n}\n", Options{}, []string{"t.pkr.hcl:3:10:", "unknown unit"}},
		{"missing kind", "image \"a\" {\n}\n", Options{}, []string{"t.pkr.hcl:1:11:", "Missing required argument"}},
		{"unknown fs", "image \"a\" {\n  kind = \"raw\"\n  partition \"r\" {\n    fs = \"zfs\"\n  }\n}\n", Options{}, []string{"t.pkr.hcl:4:10:", "ext4"}},
		{"two fills", "image \"a\" {\n  kind = \"raw\"\n  partition \"r\" {\n    fs = \"ext4\"\n  }\n  partition \"s\" {\n    fs = \"ext4\"\n  }\n}\n", Options{}, []string{"t.pkr.hcl:6:3:", "fills the rest"}},
		{"empty mirror", "image \"a\" {\n  kind = \"raw\"\n  distribution {\n    mirror = \"\"\n  }\n}\n", Options{}, []string{"t.pkr.hcl:4:14:", "mirror is empty"}},
		{"unset variable", "variable \"m\" {\n  type = string\n}\nimage \"a\" {\n  kind = \"raw\"\n}\n", Options{}, []string{"t.pkr.hcl:1:1:", "-var m=VALUE"}},
		{"undeclared -var", "image \"a\" {\n  kind = \"raw\"\n}\n", Options{Vars: map[string]string{"x": "1"}}, []string{`sets "x"`}},
		{"bad -var type", "variable \"n\" {\n  type = number\n  default = 1\n}\nimage \"a\" {\n  kind = \"raw\"\n}\n", Options{Vars: map[string]string{"n": "many"}}, []string{"t.pkr.hcl:1:1:", `"many"`}},
		{"syntax", "image \"a\" {\n  kind = \n}\n", Options{}, []string{"t.pkr.hcl:2:10:", "Invalid expression"}},
		{"duplicate image", "image \"a\" {\n  kind = \"raw\"\n}\nimage \"a\" {\n  kind = \"raw\"\n}\n", Options{}, []string{"t.pkr.hcl:4:7:", "Duplicate image"}},
		{"register unknown image", "image \"a\" {\n  kind = \"raw\"\n}\nregister \"r\" {\n  target = \"glance\"\n  image = \"b\"\n}\n", Options{}, []string{"t.pkr.hcl:6:11:", "no image block"}},
		{"ec2-s3 without bucket", "image \"a\" {\n  kind = \"raw\"\n}\nregister \"r\" {\n  target = \"ec2-s3\"\n  image = \"a\"\n}\n", Options{}, []string{"t.pkr.hcl:4:1:", "Missing bucket"}},
		{"ec2-s3 bad method", "image \"a\" {\n  kind = \"raw\"\n}\nregister \"r\" {\n  target = \"ec2-s3\"\n  image = \"a\"\n  bucket = \"b\"\n  method = \"direct\"\n}\n", Options{}, []string{"t.pkr.hcl:8:12:", `"method" is "direct"`}},
		{"bad ec2-ebs method", "image \"a\" {\n  kind = \"raw\"\n}\nregister \"r\" {\n  target = \"ec2-ebs\"\n  image = \"a\"\n  method = \"instance\"\n}\n", Options{}, []string{"t.pkr.hcl:7:12:", `"via-instance"`}},
		{"bad hostname", "image \"a\" {\n  kind = \"raw\"\n  hostname = \"conpaas_nutshell\"\n}\n", Options{}, []string{"t.pkr.hcl:3:14:", "not a host name"}},
		{"ova without source", "image \"o\" {\n  kind = \"ova\"\n}\n", Options{}, []string{"t.pkr.hcl:1:1:", "needs source"}},
		{"missing script", "image \"a\" {\n  kind = \"raw\"\n  provisioner \"shell\" {\n    script = \"nope.sh\"\n  }\n}\n", Options{}, []string{"t.pkr.hcl:4:14:", "nope.sh"}},
		{"no image", "variable \"m\" {\n  default = 1\n}\n", Options{}, []string{"No image block"}},
		{"validation", "variable \"ip\" {\n  default = \"10.0.0.1\"\n  validation {\n    condition     = can(regex(\"^172\\\\.16\\\\.\", var.ip))\n    error_message = \"Must be on 172.16.0.0/24.\"\n  }\n}\nimage \"a\" {\n  kind = \"raw\"\n}\n", Options{}, []string{"t.pkr.hcl:4:21:", "Must be on 172.16.0.0/24"}},
		{"partition in an lxc image", "image \"a\" {\n  kind = \"lxc\"\n  partition \"r\" {\n    fs = \"ext4\"\n  }\n}\n", Options{}, []string{"t.pkr.hcl:3:3:", "it has no partitions"}},
		{"bootloader in an lxc image", "image \"a\" {\n  kind = \"lxc\"\n  bootloader {\n    type = \"grub\"\n  }\n}\n", Options{}, []string{"t.pkr.hcl:3:3:", "does not boot"}},
		{"file provisioner with source and image", "image \"a\" {\n  kind = \"lxc\"\n}\nimage \"b\" {\n  kind = \"raw\"\n  provisioner \"file\" {\n    source = \"t.pkr.hcl\"\n    image = \"a\"\n    destination = \"/x\"\n  }\n}\n", Options{}, []string{"t.pkr.hcl:6:3:", "exactly one of source"}},
		{"file provisioner of an unknown image", "image \"b\" {\n  kind = \"raw\"\n  provisioner \"file\" {\n    image = \"lxc\"\n    destination = \"/x\"\n  }\n}\n", Options{}, []string{"t.pkr.hcl:1:1:", `copies in image "lxc"`}},
		{"locals cycle", "locals {\n  a = local.b\n  b = local.a\n}\nimage \"x\" {\n  kind = \"raw\"\n}\n", Options{}, []string{"t.pkr.hcl:2:3:", "Cycle in locals"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.src, tc.opt)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%s", w, err)
				}
			}
		})
	}
}

// A register block for the via-instance method (the seeds' classic mode).
func TestRegisterViaInstance(t *testing.T) {
	src := `image "conpaas" {
  kind = "raw"
}
register "aws" {
  target          = "ec2-ebs"
  image           = "conpaas"
  region          = "eu-west-1"
  method          = "via-instance"
  instance        = "i-0123456789abcdef0"
  device          = "/dev/sdf"
  guest_device    = "/dev/nvme1n1"
  ssh_user        = "root"
  ssh_key         = "/keys/conpaas.pem"
  ssh_known_hosts = "/keys/known_hosts"
}
register "direct" {
  target = "ec2-ebs"
  image  = "conpaas"
}
`
	p, err := load(t, src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := plan.Register{Name: "aws", Target: "ec2-ebs", Image: "conpaas", Region: "eu-west-1", Method: "via-instance", Instance: "i-0123456789abcdef0",
		Device: "/dev/sdf", GuestDevice: "/dev/nvme1n1", SSHUser: "root", SSHKey: "/keys/conpaas.pem", SSHKnownHosts: "/keys/known_hosts"}
	if len(p.Registers) != 2 || fmt.Sprintf("%+v", p.Registers[0]) != fmt.Sprintf("%+v", want) || p.Registers[1].Method != "direct" {
		t.Errorf("registers = %+v", p.Registers)
	}
}

func TestDefaultTemplate(t *testing.T) {
	name, src := Default()
	p, err := LoadSource(name, src, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	img := p.Image("conpaas")
	if img == nil || img.Kind != plan.KindRaw || !img.Bootloader.BIOS || !img.Bootloader.UEFI || len(img.Partitions) != 3 {
		t.Fatalf("default image = %+v", img)
	}
	for _, pkg := range []string{"openssh-server", "curl", "ca-certificates", "python3"} {
		found := false
		for _, p := range img.Distribution.Packages {
			found = found || p == pkg
		}
		if !found {
			t.Errorf("the default conpaas.img lacks %s", pkg)
		}
	}
	if filepath.Base(img.Output) != "conpaas.img" {
		t.Errorf("output %s", img.Output)
	}
	// One network stack (issue 19): systemd-networkd, which the raw
	// builder sets up, and no ifupdown DHCP client beside it.
	for _, p := range img.Distribution.Packages {
		if p == "ifupdown" || p == "isc-dhcp-client" {
			t.Errorf("the default conpaas.img installs %s, a second DHCP client beside systemd-networkd", p)
		}
	}
	for _, pr := range img.Provisioners {
		if strings.Contains(strings.Join(pr.Inline, "\n"), "/etc/network/interfaces") {
			t.Errorf("a provisioner writes /etc/network/interfaces: %q", pr.Inline)
		}
	}
}

// Template sizes follow internal/size's rule, as the command line does:
// GB is decimal, G and GiB binary.
func TestSizeUnits(t *testing.T) {
	for in, want := range map[string]int64{`"3GB"`: 3_000_000_000, `"3G"`: 3 << 30, `"3GiB"`: 3 << 30, `1610612736`: 1610612736} {
		p, err := load(t, "image \"a\" {\n  kind = \"raw\"\n  size = "+in+"\n}\n", Options{})
		if err != nil {
			t.Fatalf("size = %s: %v", in, err)
		}
		if got := p.Images[0].Size; got != want {
			t.Errorf("size = %s gives %d bytes, want %d", in, got, want)
		}
	}
	if _, err := load(t, "image \"a\" {\n  kind = \"raw\"\n  size = \"3 parsecs\"\n}\n", Options{}); err == nil || !strings.Contains(err.Error(), "unknown unit") {
		t.Errorf("a bad unit: %v", err)
	}
}

func TestPathRootAndValidationPass(t *testing.T) {
	src := `
variable "ip" {
  default = "172.16.0.9"
  validation {
    condition     = can(regex("^172\\.16\\.", var.ip))
    error_message = "Must be on 172.16.0.0/24."
  }
}
image "a" {
  kind        = "raw"
  environment = { ROOT = path.root, IP = var.ip, FIRST = try(split(",", "x,y")[0], "none") }
}
`
	p, err := load(t, src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	env := p.Images[0].Env
	if env["IP"] != "172.16.0.9" || env["FIRST"] != "x" || !filepath.IsAbs(env["ROOT"]) {
		t.Errorf("env = %v", env)
	}
}
