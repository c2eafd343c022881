package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/conpaas/cps/images/catalogue"
)

// Partition type GUIDs, from the UEFI specification (EFI system
// partition) and GRUB's manual (BIOS boot partition, "Hah!IdontNeedEFI").
const (
	espGUID      = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	biosBootGUID = "21686148-6449-6E6F-744E-656564454649"
	linuxGUID    = "0FC63DAF-8483-4772-8E79-3D69E47D0E4F"
)

// diskImage partitions a new 16 MiB file with the real sfdisk and, when
// bootCode, puts bytes in the MBR's boot code area as grub-install does
// (the first three bytes of GRUB's boot.img: a jump and a nop).
func diskImage(t *testing.T, path, script string, bootCode bool) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 16<<20); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", "-q", path)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	if bootCode {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte{0xeb, 0x63, 0x90}, 0)
		f.Close()
	}
}

// register -image takes the version, arch and boot modes from the flags,
// else from the image (its partition table), else from the catalogue, and
// the AMI says so: on the old code every -image was an x86_64 legacy-bios
// AMI, and -version was overwritten by the catalogue's.
func TestRegisterImageMetadata(t *testing.T) {
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Fatal("sfdisk is needed (make deps installs it)")
	}
	f := startEC2(t)
	dir := t.TempDir()
	both := filepath.Join(dir, "both.img")
	diskImage(t, both, "label: gpt\nsize=1MiB, type="+biosBootGUID+"\nsize=4MiB, type="+espGUID+"\ntype="+linuxGUID+"\n", true)
	uefi := filepath.Join(dir, "uefi.img")
	diskImage(t, uefi, "label: gpt\nsize=4MiB, type="+espGUID+"\ntype="+linuxGUID+"\n", false)
	bios := filepath.Join(dir, "bios.img")
	diskImage(t, bios, "label: dos\ntype=83\n", true)
	// A BIOS boot partition whose core nothing loads: the MBR has no code.
	dead := filepath.Join(dir, "dead.img")
	diskImage(t, dead, "label: gpt\nsize=1MiB, type="+biosBootGUID+"\ntype="+linuxGUID+"\n", false)

	// What AWS documents (RegisterImage, BootMode): arm64 AMIs, and
	// images that boot both ways are uefi-preferred.
	for _, tc := range []struct {
		name, file string
		args       []string
		arch, mode string
		catArch    catalogue.Arch
		catBoot    string
	}{
		{"bios+uefi from the table", both, nil, "x86_64", "uefi-preferred", "amd64", "bios,uefi"},
		{"uefi only, arm64 flag", uefi, []string{"-arch", "arm64"}, "arm64", "uefi", "arm64", "uefi"},
		{"mbr with boot code", bios, nil, "x86_64", "legacy-bios", "amd64", "bios"},
		{"-boot wins over the table", both, []string{"-name", "both-uefi", "-boot", "uefi"}, "x86_64", "uefi", "amd64", "uefi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cat := filepath.Join(t.TempDir(), "catalogue.json")
			args := append([]string{"register", "-target", "ec2-ebs", "-image", tc.file, "-version", "2.1.0", "-region", "eu-west-1", "-catalogue", cat}, tc.args...)
			code, out, errOut := run(t, args...)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, out, errOut)
			}
			var ami string
			for _, w := range strings.Fields(out) {
				if strings.HasPrefix(w, "ami-") {
					ami = w
				}
			}
			img := f.Images[ami]
			if img == nil {
				t.Fatalf("no AMI %q in the fake: %s", ami, out)
			}
			if img.Arch != tc.arch || img.BootMode != tc.mode {
				t.Errorf("AMI architecture %s boot mode %s, want %s %s", img.Arch, img.BootMode, tc.arch, tc.mode)
			}
			c, _ := catalogue.Load(cat)
			a := c.Artifacts[0]
			if a.Version != "2.1.0" || a.Arch != tc.catArch || a.Boot.String() != tc.catBoot || a.Format != catalogue.FormatRaw || a.Kind != catalogue.KindRaw {
				t.Errorf("catalogue records %+v", a)
			}
		})
	}

	// The catalogue knows both.img as conpaas 2.1.0, amd64, BIOS only
	// (an entry that is wrong about the boot modes).
	cat := filepath.Join(dir, "catalogue.json")
	if code, out, errOut := run(t, "catalogue", "add", "-f", cat, "-name", "both", "-version", "2.1.0", "-arch", "amd64", "-boot", "bios", both); code != 0 {
		t.Fatalf("catalogue add: exit %d\n%s%s", code, out, errOut)
	}
	before := f.Requests["RegisterImage"] + f.Requests["StartSnapshot"]
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-version", "2.2.0"}, "version: -version is 2.2.0, but the catalogue " + cat + " records these bytes (both 2.1.0"},
		{[]string{"-arch", "arm64", "-boot", "bios"}, "arch: -arch is arm64, but"},
		{[]string{"-boot", "uefi"}, "boot: -boot is uefi, but"},
		{nil, "boot: the image's partition table says bios,uefi, but the catalogue " + cat + " records these bytes (both 2.1.0"},
		{[]string{"-arch", "sparc"}, `-arch "sparc": use one of amd64, arm64, armhf`},
		{[]string{"-boot", "efi"}, `-boot "efi": use bios, uefi or bios,uefi`},
	} {
		args := append([]string{"register", "-target", "ec2-ebs", "-image", both, "-region", "eu-west-1", "-catalogue", cat}, tc.args...)
		code, _, errOut := run(t, args...)
		if code != 2 || !strings.Contains(errOut, tc.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 1 {
			t.Errorf("%v: exit %d: %s\nwant %q", tc.args, code, errOut, tc.want)
		}
	}
	// Agreeing with the catalogue: its version and boot modes are used.
	code, out, errOut := run(t, "register", "-target", "ec2-ebs", "-image", both, "-region", "us-west-1", "-catalogue", cat, "-boot", "bios")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if n := f.Requests["RegisterImage"] + f.Requests["StartSnapshot"]; n != before+2 {
		t.Errorf("%d requests made by the refused runs", n-before-2)
	}

	// An image nothing says how to boot is refused before any upload.
	code, _, errOut = run(t, "register", "-target", "ec2-ebs", "-image", dead, "-version", "1", "-region", "eu-west-1", "-catalogue", filepath.Join(dir, "c2.json"))
	if code == 0 || !strings.Contains(errOut, "BIOS boot partition but no boot code") || !strings.Contains(errOut, "-boot") {
		t.Errorf("unbootable: exit %d: %s", code, errOut)
	}
}

// catalogue add records the file's real format: a qcow2 is not raw.
func TestCatalogueAddFormat(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatal("qemu-img is needed (make deps installs it)")
	}
	dir := t.TempDir()
	raw := filepath.Join(dir, "both.img")
	diskImage(t, raw, "label: gpt\nsize=1MiB, type="+biosBootGUID+"\nsize=4MiB, type="+espGUID+"\ntype="+linuxGUID+"\n", true)
	cat := filepath.Join(dir, "catalogue.json")
	for _, format := range []string{"qcow2", "vmdk"} {
		out := filepath.Join(dir, "conpaas."+format)
		if b, err := exec.Command("qemu-img", "convert", "-O", format, raw, out).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img: %v\n%s", err, b)
		}
		if code, o, e := run(t, "catalogue", "add", "-f", cat, "-name", "conpaas-"+format, "-version", "2.1.0", out); code != 0 {
			t.Fatalf("exit %d\n%s%s", code, o, e)
		}
	}
	if code, o, e := run(t, "catalogue", "add", "-f", cat, "-version", "2.1.0", raw); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, o, e)
	}
	// An empty file (a failed download) is no image: refused, nothing added.
	empty := filepath.Join(dir, "empty.img")
	os.WriteFile(empty, nil, 0o644)
	if code, o, e := run(t, "catalogue", "add", "-f", cat, empty); code != 1 || !strings.Contains(e, "is empty (0 bytes), not an image") {
		t.Errorf("empty image: exit %d\n%s%s", code, o, e)
	}
	c, _ := catalogue.Load(cat)
	if c.Find("empty") != nil {
		t.Errorf("the empty file was added")
	}
	for name, want := range map[string]string{"conpaas-qcow2": "qcow2 ", "conpaas-vmdk": "vmdk ", "both": "raw bios,uefi"} {
		a := c.Find(name)
		if a == nil || string(a.Format)+" "+a.Boot.String() != want {
			t.Errorf("%s: %+v, want format and boot %q", name, a, want)
		}
	}
}

// Each target says which artifacts it takes and refuses the others in one
// sentence, before anything is hashed or sent (on the old code ec2-ebs
// uploaded an OVA byte for byte as the AMI's root disk); a setting of
// another target is refused too.
func TestRegisterRefusesKinds(t *testing.T) {
	f := startEC2(t)
	t.Setenv("CPS_GLANCE_ENDPOINT", "http://127.0.0.1:9") // never reached: refused first
	dir := t.TempDir()
	raw := filepath.Join(dir, "conpaas.img")
	diskImage(t, raw, "label: gpt\nsize=1MiB, type="+biosBootGUID+"\nsize=4MiB, type="+espGUID+"\ntype="+linuxGUID+"\n", true)
	// An appliance made by the real tar, as an OVA is (OVF 2.0, 5.3: a
	// tar whose first member is the descriptor).
	if err := os.WriteFile(filepath.Join(dir, "conpaas.ovf"), []byte("<Envelope/>"), 0o644); err != nil {
		t.Fatal(err)
	}
	ova := filepath.Join(dir, "conpaas.ova")
	if out, err := exec.Command("tar", "-C", dir, "-cf", ova, "conpaas.ovf", "conpaas.img").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	qcow := filepath.Join(dir, "conpaas.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-O", "qcow2", raw, qcow).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	cat := filepath.Join(dir, "catalogue.json")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-target", "ec2-ebs", "-image", ova}, "ec2-ebs: " + ova + " is a ova image, and ec2-ebs registers only raw; register a raw disk image"},
		{[]string{"-target", "ec2-s3", "-image", qcow, "-bucket", "b"}, "is a qcow2 file, and ec2-s3 uploads only raw; register a raw disk image"},
		{[]string{"-target", "ec2-ebs", "-image", raw, "-arch", "armhf"}, "is a armhf image; EC2 runs only amd64 (x86_64) and arm64"},
		{[]string{"-target", "glance", "-image", raw, "-bucket", "b", "-region", ""}, `register "glance" (glance): bucket is not a setting of glance (its settings: cloud, container_format, disk_format, properties, visibility)`},
		{[]string{"-target", "ec2-ebs", "-image", raw, "-cloud", "x", "-bucket", "b"}, "bucket, cloud are not settings of ec2-ebs"},
	} {
		before := len(f.Requests)
		code, _, errOut := run(t, append([]string{"register", "-region", "us-east-1", "-catalogue", cat}, tc.args...)...)
		if code != 1 || !strings.Contains(errOut, tc.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("%v: exit %d: %s\nwant %q", tc.args, code, errOut, tc.want)
		}
		if len(f.Requests) != before {
			t.Errorf("%v: requests were made: %v", tc.args, f.Requests)
		}
	}
	if _, err := os.Stat(cat); err == nil {
		t.Error("a refused run wrote the catalogue")
	}
}

// register with a template takes the artifact's boot modes from the
// catalogue, not from the template (which may have changed since the
// build, and which the old code re-read): the template here says BIOS
// only, the catalogue bios,uefi, and the AMI is uefi-preferred. A flag
// reaches only the blocks whose target has the setting: -public sets the
// EC2 block's, and the glance block fails on its own (its endpoint), not
// on "public is not a setting of glance".
func TestRegisterTemplateUsesCatalogue(t *testing.T) {
	f := startEC2(t)
	t.Setenv("CPS_GLANCE_ENDPOINT", "http://127.0.0.1:9")
	dir := t.TempDir()
	img := filepath.Join(dir, "conpaas.img")
	diskImage(t, img, "label: gpt\nsize=1MiB, type="+biosBootGUID+"\nsize=4MiB, type="+espGUID+"\ntype="+linuxGUID+"\n", true)
	cat := filepath.Join(dir, "catalogue.json")
	if code, o, e := run(t, "catalogue", "add", "-f", cat, "-version", "2.1.0", img); code != 0 {
		t.Fatalf("catalogue add: exit %d\n%s%s", code, o, e)
	}
	tmpl := filepath.Join(dir, "t.pkr.hcl")
	os.WriteFile(tmpl, []byte(`image "conpaas" {
  kind    = "raw"
  version = "2.1.0"
  bootloader {
    type = "grub"
    bios = true
    uefi = false
  }
}
register "aws" {
  target = "ec2-ebs"
  image  = "conpaas"
  region = "eu-west-1"
}
register "os" {
  target = "glance"
  image  = "conpaas"
}
`), 0o644)
	code, out, errOut := run(t, "register", "-public", "-catalogue", cat, tmpl)
	if code != 1 || !strings.Contains(errOut, "cannot") || strings.Contains(errOut, "not a setting") {
		t.Errorf("exit %d: %s", code, errOut)
	}
	var ami string
	for _, w := range strings.Fields(out) {
		if strings.HasPrefix(w, "ami-") {
			ami = w
		}
	}
	im := f.Images[ami]
	if im == nil || im.BootMode != "uefi-preferred" || !im.Public {
		t.Fatalf("AMI %q: %+v\n%s%s", ami, im, out, errOut)
	}
	c, _ := catalogue.Load(cat)
	if a := c.Find("conpaas"); a == nil || len(a.Registered) != 1 || a.Registered[0].ImageID != ami {
		t.Errorf("catalogue: %+v", a)
	}
}

// register -image DIR opened the directory and then called it "a pipe or
// character device"; -image FIFO blocked in open(2) for a writer, which
// Ctrl-C could not end. Both are refused before opening (exit 2). Run as
// processes, killed after 20 s, so a regression fails instead of hanging.
func TestRegisterImageNotAFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "conpaas.img")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, image, want string
	}{
		{"directory", dir, dir + " is a directory; register -image needs the image file"},
		{"FIFO", fifo, fifo + " is a pipe, FIFO or character device; register needs a file or block device it can read twice"},
		{"character device", "/dev/null", "/dev/null is a pipe, FIFO or character device"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := cpsimage(t, "register", "-target", "glance", "-image", tc.image, "-catalogue", filepath.Join(dir, "c.json"))
			cmd.Env = append(cmd.Env, "CPS_GLANCE_ENDPOINT=http://127.0.0.1:9")
			code, stderr := runKilledAfter(t, 20*time.Second, cmd)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d (want 2), stderr %q; want %q", code, stderr, tc.want)
			}
		})
	}
}
