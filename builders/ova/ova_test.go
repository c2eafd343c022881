package ova

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/images/verify"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/plan"
)

func rawDisk(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "conpaas.img")
	f, _ := os.Create(p)
	defer f.Close()
	f.Truncate(size)
	for _, off := range []int64{0, 10 << 20, size - 4096} {
		b := make([]byte, 256<<10)
		rand.Read(b)
		if off+int64(len(b)) > size {
			b = b[:size-off]
		}
		f.WriteAt(b, off)
	}
	return p
}

// The Nutshell appliance from a raw disk: tar order, a well-formed OVF with
// the seeds' hardware (4 CPUs, 4 GB, NAT + host-only), a manifest that
// matches, and a VMDK qemu-img reads back as the same disk.
func TestBuildNutshellOVA(t *testing.T) {
	for _, tool := range []string{"qemu-img", "xmllint"} {
		testutil.RequireTool(t, tool)
	}
	src := rawDisk(t, 64<<20)
	dir := t.TempDir()
	img := &plan.Image{Name: "nutshell", Kind: plan.KindOVA, Version: "2.1.0", Source: src,
		Output: filepath.Join(dir, "ConPaaS-Nutshell.ova"), Checksums: []string{"md5"},
		VM: &plan.VM{Name: "ConPaaS-Nutshell", OSType: "Debian_64", CPUs: 4, MemoryMiB: 4096, DiskController: "sata",
			NICs: []plan.NIC{{Type: "nat"}, {Type: "hostonly", Network: "vboxnet0"}}}}
	res, err := Builder{}.Build(context.Background(), &plan.Plan{Images: []plan.Image{*img}}, img, builders.Options{SourceDateEpoch: 1700000000})
	if err != nil {
		t.Fatal(err)
	}
	if ps, err := verify.OVA(res.Path); err != nil || len(ps) != 0 {
		t.Fatalf("verify.OVA: %v %v", ps, err)
	}
	// Members in order, extracted for the tools.
	f, _ := os.Open(res.Path)
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	ex := t.TempDir()
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Format != tar.FormatUSTAR && h.Format != tar.FormatUnknown {
			t.Errorf("%s: tar format %v, want ustar", h.Name, h.Format)
		}
		names = append(names, h.Name)
		out, _ := os.Create(filepath.Join(ex, h.Name))
		io.Copy(out, tr)
		out.Close()
	}
	if strings.Join(names, " ") != "ConPaaS-Nutshell.ovf ConPaaS-Nutshell.mf ConPaaS-Nutshell-disk1.vmdk" {
		t.Fatalf("members %v", names)
	}
	if out, err := exec.Command("xmllint", "--noout", filepath.Join(ex, names[0])).CombinedOutput(); err != nil {
		t.Errorf("xmllint: %v\n%s", err, out)
	}
	ovf, _ := os.ReadFile(filepath.Join(ex, names[0]))
	for _, want := range []string{`ovf:capacity="67108864"`, "<rasd:VirtualQuantity>4</rasd:VirtualQuantity>", "<rasd:VirtualQuantity>4096</rasd:VirtualQuantity>",
		`<Network ovf:name="NAT">`, `<Network ovf:name="HostOnly">`, "AHCI", "streamOptimized", "<vbox:OSType ovf:required=\"false\">Debian_64</vbox:OSType>"} {
		if !strings.Contains(string(ovf), want) {
			t.Errorf("OVF lacks %s", want)
		}
	}
	// GNU tar reads it too (the disk's header was written last, in place).
	if out, err := exec.Command("tar", "-tf", res.Path).CombinedOutput(); err != nil || strings.Fields(string(out))[2] != names[2] {
		t.Errorf("tar -tf: %v\n%s", err, out)
	}
	// The disk went straight into the OVA: nothing else was written.
	if st, _ := os.Stat(res.Path); res.WrittenBytes != st.Size() {
		t.Errorf("wrote %d bytes for a %d-byte OVA", res.WrittenBytes, st.Size())
	}
	vm := filepath.Join(ex, names[2])
	if out, err := exec.Command("qemu-img", "check", vm).CombinedOutput(); err != nil {
		t.Errorf("qemu-img check: %v\n%s", err, out)
	}
	if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "vmdk", src, vm).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare: %v\n%s", err, out)
	}
	// Reproducible: the same disk and epoch give the same OVA.
	img2 := *img
	img2.Output = filepath.Join(t.TempDir(), "ConPaaS-Nutshell.ova")
	res2, err := Builder{}.Build(context.Background(), &plan.Plan{}, &img2, builders.Options{SourceDateEpoch: 1700000000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sums.Get("md5") != res2.Sums.Get("md5") {
		t.Errorf("two builds differ: %s vs %s", res.Sums.Get("md5"), res2.Sums.Get("md5"))
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestBuildRefuses(t *testing.T) {
	img := &plan.Image{Name: "n", Kind: plan.KindOVA, Source: "base", VM: &plan.VM{}}
	p := &plan.Plan{Images: []plan.Image{{Name: "base"}, *img}}
	if _, err := (Builder{}).Build(context.Background(), p, img, builders.Options{}); err == nil || !strings.Contains(err.Error(), "not been built") {
		t.Errorf("unbuilt source: %v", err)
	}
	img.Source = filepath.Join(t.TempDir(), "missing.img")
	if _, err := (Builder{}).Build(context.Background(), &plan.Plan{}, img, builders.Options{}); err == nil || !strings.Contains(err.Error(), "source disk") {
		t.Errorf("missing source: %v", err)
	}
}
