package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conpaas/cps/builders/disk"
	cfs "github.com/conpaas/cps/builders/fs"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/images/ptable"
	"github.com/conpaas/cps/internal/cli"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/plan"
)

// run runs a cpsimage command in-process and returns its exit code, stdout
// and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	oldOut, oldErr := cli.Stdout, cli.Stderr
	cli.Stdout, cli.Stderr = &out, &errb
	defer func() { cli.Stdout, cli.Stderr = oldOut, oldErr }()
	code := commands.Main(t.Context(), args, &errb)
	return code, out.String(), errb.String()
}

// corpus makes good files and corrupted copies: one-byte flips at the
// start, middle and end, and a truncation, each listed in a checksum file
// made for the good bytes.
func corpus(t *testing.T) (dir string, names []string) {
	t.Helper()
	dir = t.TempDir()
	data := make([]byte, 3<<20+123)
	rand.Read(data)
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	write("good.img", data)
	for name, off := range map[string]int{"flip-start.img": 0, "flip-middle.img": len(data) / 2, "flip-end.img": len(data) - 1} {
		b := append([]byte(nil), data...)
		b[off] ^= 0x01
		write(name, b)
	}
	write("truncated.img", data[:len(data)-4096])
	// A sparse file: a hole between two data blocks.
	f, _ := os.Create(filepath.Join(dir, "sparse.img"))
	f.WriteAt([]byte("head"), 0)
	f.WriteAt([]byte("tail"), 64<<20)
	f.Close()
	names = append(names, "sparse.img")
	// The checksum file holds the GOOD digest for every name.
	good, _ := exec.Command("md5sum", filepath.Join(dir, "good.img")).Output()
	sparse, _ := exec.Command("md5sum", filepath.Join(dir, "sparse.img")).Output()
	var sb strings.Builder
	for _, n := range names {
		h := strings.Fields(string(good))[0]
		if n == "sparse.img" {
			h = strings.Fields(string(sparse))[0]
		}
		fmt.Fprintf(&sb, "%s  %s\n", h, n)
	}
	os.WriteFile(filepath.Join(dir, "SUMS.md5"), []byte(sb.String()), 0o644)
	return dir, names
}

// TestVerifyAgreesWithMD5sum: cpsimage md5 -c and cpsimage verify -c give
// md5sum -c's verdict on every file of the corpus.
func TestVerifyAgreesWithMD5sum(t *testing.T) {
	testutil.RequireTool(t, "md5sum")
	dir, names := corpus(t)
	sums := filepath.Join(dir, "SUMS.md5")
	cmd := exec.Command("md5sum", "-c", "SUMS.md5")
	cmd.Dir = dir
	ref, _ := cmd.Output()
	res := execIn(dir, "", cpsimage(t, "md5", "-c", "SUMS.md5"))
	code, out := res.code, res.stdout
	if string(ref) != out {
		t.Errorf("md5 -c output differs from md5sum -c:\n--- md5sum\n%s--- cpsimage\n%s", ref, out)
	}
	if code != 1 {
		t.Errorf("md5 -c exit %d, want 1 (some failed)", code)
	}
	for _, n := range names {
		okRef := strings.Contains(string(ref), n+": OK")
		code, out, errOut := run(t, "verify", "-c", sums, filepath.Join(dir, n))
		if okRef != (code == 0) {
			t.Errorf("%s: md5sum says ok=%v, verify exit %d:\n%s%s", n, okRef, code, out, errOut)
		}
		if !okRef && code != 1 {
			t.Errorf("%s: a mismatch must exit 1, got %d", n, code)
		}
	}
	// Plain md5 output is md5sum's.
	ref, _ = exec.Command("md5sum", filepath.Join(dir, "sparse.img")).Output()
	if _, out, _ := run(t, "md5", filepath.Join(dir, "sparse.img")); out != string(ref) {
		t.Errorf("md5 = %q, md5sum = %q", out, ref)
	}
}

func TestVerifyExpectedSources(t *testing.T) {
	dir := t.TempDir()
	// A file named like a published artifact.
	nutshell := filepath.Join(dir, "ConPaaS-Nutshell-2.1.0.ova")
	os.WriteFile(nutshell, []byte("not the appliance"), 0o644)
	other := filepath.Join(dir, "mine.img")
	os.WriteFile(other, []byte("hello\n"), 0o644)
	sums := filepath.Join(dir, "mine.img.sums")
	os.WriteFile(sums, []byte("b1946ac92492d2347c6235b4d2611184  "+other+"\n"), 0o644)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"published name, wrong bytes", []string{"verify", nutshell}, 1, "published ConPaaS 2.1.0"},
		{"published name, right md5 given", []string{"verify", "--md5", "b1946ac92492d2347c6235b4d2611184", other}, 0, "OK"},
		{"wrong --md5", []string{"verify", "--md5", "00000000000000000000000000000000", other}, 1, "download it again"},
		{"bad --md5", []string{"verify", "--md5", "xyz", other}, 2, "32 hexadecimal"},
		{"no expected value", []string{"verify", other}, 2, "pass --md5 HEX"},
		{"missing file", []string{"verify", "--md5", "b1946ac92492d2347c6235b4d2611184", filepath.Join(dir, "nope")}, 1, "no such file"},
		{"directory", []string{"verify", "--md5", "b1946ac92492d2347c6235b4d2611184", dir}, 1, "directory"},
		{"json", []string{"verify", "--json", "--md5", "b1946ac92492d2347c6235b4d2611184", other}, 0, `"ok": true`},
		// --md5 and -c are alternatives (the usage line says so): both is a
		// usage error, whichever order, not -c silently overriding a wrong --md5.
		{"--md5 and -c", []string{"verify", "--md5", "00000000000000000000000000000000", "-c", sums, other}, 2, "pass only one of them"},
		{"-c and --md5", []string{"verify", "-c", sums, "--md5", "b1946ac92492d2347c6235b4d2611184", other}, 2, "pass only one of them"},
		{"-c alone", []string{"verify", "-c", sums, other}, 0, "OK"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, tc.args...)
			if code != tc.code || !strings.Contains(out+errOut, tc.want) {
				t.Errorf("exit %d (want %d), output lacks %q:\n%s%s", code, tc.code, tc.want, out, errOut)
			}
		})
	}
}

func TestMalformedSumFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), []byte("hello\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "S"), []byte("b1946ac92492d2347c6235b4d2611184  a\nnot a line\n"), 0o644)
	res := execIn(dir, "", cpsimage(t, "md5", "-c", "--warn", "S"))
	if res.code != 0 || !strings.Contains(res.stdout, "a: OK") || !strings.Contains(res.stderr, "S: 2: improperly formatted MD5 checksum line") {
		t.Errorf("%s", res)
	}
}

func TestCatalogueCLI(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "conpaas.img")
	os.WriteFile(img, []byte("hello\n"), 0o644)
	cat := filepath.Join(dir, "catalogue.json")
	steps := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"catalogue", "list", "-f", cat}, 2, "no catalogue"},
		{[]string{"catalogue", "add", "-f", cat, "--version", "2.1.0", img}, 0, "added conpaas 2.1.0 (b1946ac92492d2347c6235b4d2611184)"},
		{[]string{"catalogue", "set-registration", "-f", cat, "--cloud", "ec2", "--target", "ec2-ebs", "--region", "us-east-1", "--image-id", "ami-14f2d903", "conpaas"}, 0, "ami-14f2d903"},
		{[]string{"catalogue", "set-registration", "-f", cat, "--cloud", "ec2", "--target", "ec2-ebs", "--image-id", "ami-1", "nope"}, 1, "no artifact"},
		{[]string{"catalogue", "show", "-f", cat, "conpaas"}, 0, `"image_id": "ami-14f2d903"`},
		{[]string{"catalogue", "list", "-f", cat}, 0, "conpaas  2.1.0"},
		{[]string{"verify", "--catalogue", cat, img}, 0, "from catalogue"},
		// Flags after the NAME or FILE, as the usage writes them ("show
		// NAME [--version V]"); they were taken as more arguments.
		{[]string{"catalogue", "show", "conpaas", "-f", cat, "--version", "2.1.0"}, 0, `"version": "2.1.0"`},
		{[]string{"catalogue", "show", "conpaas", "-f", cat, "--version", "9"}, 1, `no artifact "conpaas" 9`},
		{[]string{"catalogue", "add", img, "-f", cat, "--version", "2.2.0"}, 0, "added conpaas 2.2.0"},
		{[]string{"catalogue", "set-registration", "conpaas", "-f", cat, "--version", "2.2.0", "--cloud", "ec2", "--target", "ec2-ebs", "--image-id", "ami-2"}, 0, "ami-2"},
		{[]string{"catalogue", "show", "conpaas", "extra", "-f", cat}, 2, "name one artifact"},
		{[]string{"catalogue", "show", "-f", cat, "--", "-conpaas"}, 1, `no artifact "-conpaas"`},
	}
	for _, s := range steps {
		code, out, errOut := run(t, s.args...)
		if code != s.code || !strings.Contains(out+errOut, s.want) {
			t.Errorf("%v: exit %d (want %d), output lacks %q:\n%s%s", s.args, code, s.code, s.want, out, errOut)
		}
	}
}

func TestConvertAndOVAInspect(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	f, _ := os.Create(raw)
	f.Truncate(8 << 20)
	f.WriteAt([]byte("boot sector and some data"), 0)
	f.Close()
	if code, out, errOut := run(t, "convert", "--to", "vmdk", raw); code != 0 || !strings.Contains(out, "streamOptimized") {
		t.Fatalf("convert: %d %s %s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "disk.vmdk")); err != nil {
		t.Fatal(err)
	}
	odd := filepath.Join(dir, "odd.img")
	os.WriteFile(odd, make([]byte, 1000), 0o644)
	if code, _, errOut := run(t, "convert", "-o", filepath.Join(dir, "odd.vmdk"), odd); code != 2 || !strings.Contains(errOut, "512-byte sectors") {
		t.Errorf("odd size: %d %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "odd.vmdk")); err == nil {
		t.Error("a failed convert left its output")
	}
	// An OVA built from the raw disk, inspected.
	tmpl := filepath.Join(dir, "o.pkr.hcl")
	os.WriteFile(tmpl, []byte(fmt.Sprintf("image \"n\" {\n  kind   = \"ova\"\n  source = %q\n  output = \"n.ova\"\n}\n", raw)), 0o644)
	// An absolute output directory is the command line's to choose.
	if code, out, errOut := run(t, "build", "-o", dir, tmpl); code != 0 {
		t.Fatalf("build ova: %d %s %s", code, out, errOut)
	}
	code, out, errOut := run(t, "ova", "inspect", filepath.Join(dir, "n.ova"))
	if code != 0 || !strings.Contains(out, "4 CPUs, 4096 MiB") || !strings.Contains(out, "NAT, HostOnly") || !strings.Contains(out, "manifest: OK") {
		t.Errorf("inspect: %d\n%s%s", code, out, errOut)
	}
}

// verify run from another directory finds what `cpsimage build` wrote
// beside the image: FILE.sha256, FILE.md5, catalogue.json.
func TestVerifyFindsSideFiles(t *testing.T) {
	hello := "b1946ac92492d2347c6235b4d2611184" // md5 of "hello\n" (md5sum)
	helloSHA := "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
	for _, tc := range []struct {
		name  string
		files map[string]string // beside conpaas.img
		code  int
		want  string
	}{
		{"md5", map[string]string{"conpaas.img.md5": hello + "  conpaas.img\n"}, 0, "OK (md5 " + hello + ", from DIR/conpaas.img.md5 line 1)"},
		{"sha256", map[string]string{"conpaas.img.sha256": helloSHA + "  conpaas.img\n"}, 0, "OK (sha256 " + helloSHA + ", from DIR/conpaas.img.sha256 line 1)"},
		{"sha256 first", map[string]string{"conpaas.img.sha256": helloSHA + "  conpaas.img\n", "conpaas.img.md5": "00000000000000000000000000000000  conpaas.img\n"}, 0, "from DIR/conpaas.img.sha256"},
		{"catalogue", map[string]string{"catalogue.json": `{"schema_version":1,"artifacts":[{"name":"conpaas","version":"2.1.0","kind":"raw","arch":"amd64","file":"conpaas.img","size":6,"md5":"` + hello + `","sha256":"` + helloSHA + `"}]}`}, 0, "from catalogue DIR/catalogue.json (conpaas 2.1.0)"},
		{"catalogue sha256 differs", map[string]string{"catalogue.json": `{"schema_version":1,"artifacts":[{"name":"conpaas","version":"2.1.0","kind":"raw","arch":"amd64","file":"conpaas.img","size":6,"md5":"` + hello + `","sha256":"` + strings.Repeat("0", 64) + `"}]}`}, 1, "sha256 is " + helloSHA + " but catalogue DIR/catalogue.json (conpaas 2.1.0) says 0000"},
		{"catalogue malformed", map[string]string{"catalogue.json": `{"schema_version":1,"artifacts":[{"name":"conpaas","version":"2.1.0","kind":"raw","arch":"amd64","file":"conpaas.img","size":6,"md5":"zz","sha256":"` + helloSHA + `"}]}`}, 2, `catalogue DIR/catalogue.json: line 1, column 134: artifact "conpaas" version "2.1.0": md5 "zz" is not 32 hexadecimal digits`},
		{"wrong md5", map[string]string{"conpaas.img.md5": "00000000000000000000000000000000  conpaas.img\n"}, 1, "but DIR/conpaas.img.md5 line 1 says 00000000000000000000000000000000"},
		{"md5 of another file", map[string]string{"conpaas.img.md5": hello + "  other.img\n"}, 2, "DIR/conpaas.img.md5 does not list conpaas.img"},
		{"nothing", nil, 2, "no expected checksum for DIR/conpaas.img: no conpaas.img.md5 or conpaas.img.sha256 beside it, it is not in catalogue.json or DIR/catalogue.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "conpaas.img")
			os.WriteFile(img, []byte("hello\n"), 0o644)
			for n, c := range tc.files {
				os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644)
			}
			code, out, errOut := run(t, "verify", img)
			want := strings.ReplaceAll(tc.want, "DIR", dir)
			if code != tc.code || !strings.Contains(out+errOut, want) {
				t.Errorf("exit %d (want %d), output lacks %q:\n%s%s", code, tc.code, want, out, errOut)
			}
		})
	}
}

// verify --structure says what it checked, and finds a zeroed MBR boot
// code on an image that boots under BIOS.
func TestVerifyStructureReport(t *testing.T) {
	testutil.RequireTool(t, "mkfs.ext4")
	testutil.RequireTool(t, "mkfs.fat")
	img := filepath.Join(t.TempDir(), "conpaas.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	const size = 96 << 20
	f.Truncate(size)
	parts := []plan.Partition{{Name: "bios", FS: "bios_grub", Size: 1 << 20}, {Name: "esp", FS: "esp", Size: 40 << 20}, {Name: "root", FS: "ext4"}}
	if err := disk.Layout(size, 1<<20, ptable.GPT, parts); err != nil {
		t.Fatal(err)
	}
	if err := disk.WriteTable(f, size, ptable.GPT, parts, "s"); err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("GRUB core image"), parts[0].Start)
	if err := cfs.MakeFAT32(t.Context(), f, parts[1].Start, parts[1].End-parts[1].Start, "", "ESP", 1, 1); err != nil {
		t.Fatal(err)
	}
	if err := cfs.MakeExt4(t.Context(), f, parts[2].Start, parts[2].End-parts[2].Start, "", "root", disk.GUID("s", "r"), 1); err != nil {
		t.Fatal(err)
	}
	f.WriteAt(append([]byte{0xeb, 0x63, 0x90}, []byte("GRUB Geom Hard Disk Read Error")...), 0)
	f.Close()
	md5file := func() {
		out, err := exec.Command("md5sum", img).Output()
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(img+".md5", out, 0o644)
	}
	md5file()
	code, out, errOut := run(t, "verify", "--structure", img)
	for _, want := range []string{": OK (md5 ", "  checked: partition table: gpt, 3 partitions\n", "  checked: partition 1 (bios_grub, bytes 1048576-2097152): GRUB core image present\n",
		"  checked: partition 2 (esp, ", "): FAT boot sector\n", "): ext2/3/4 superblock\n", "  checked: MBR boot code: present (GRUB boot.img)\n"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("exit %d, output lacks %q:\n%s%s", code, want, out, errOut)
		}
	}
	// Without --structure: the checksum only.
	if _, out, _ := run(t, "verify", img); strings.Contains(out, "checked:") {
		t.Errorf("plain verify printed structure checks:\n%s", out)
	}
	// The boot code zeroed (and the checksum file made for those bytes).
	f, _ = os.OpenFile(img, os.O_RDWR, 0)
	f.WriteAt(make([]byte, 440), 0)
	f.Close()
	md5file()
	code, out, errOut = run(t, "verify", "--structure", img)
	if code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "the MBR has no boot code") {
		t.Errorf("zeroed boot code: exit %d\n%s%s", code, out, errOut)
	}
}

// The catalogue's built is the build time, also when SOURCE_DATE_EPOCH
// pins the timestamps inside the image, whose bytes stay the same.
func TestBuildRecordsBuildTime(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	os.WriteFile(raw, bytes.Repeat([]byte("conpaas"), 1<<17), 0o644)
	tmpl := filepath.Join(dir, "o.pkr.hcl")
	os.WriteFile(tmpl, []byte(fmt.Sprintf("image \"n\" {\n  kind   = \"ova\"\n  source = %q\n  output = \"n.ova\"\n}\n", raw)), 0o644)
	var md5s []string
	for i := 0; i < 2; i++ {
		start := time.Now().UTC().Truncate(time.Second)
		if code, out, errOut := run(t, "build", "-force", "-o", dir, "-source-date-epoch", "1700000000", tmpl); code != 0 {
			t.Fatalf("build: %d %s %s", code, out, errOut)
		}
		c, err := catalogue.Load(filepath.Join(dir, "catalogue.json"))
		if err != nil {
			t.Fatal(err)
		}
		a := c.Find("n")
		if a == nil || a.Built.Before(start) || a.Built.After(time.Now()) {
			t.Fatalf("built = %v, want the build's time (after %v); the image's timestamps are 2023-11-14 (SOURCE_DATE_EPOCH)", a, start)
		}
		md5s = append(md5s, a.MD5)
	}
	if md5s[0] != md5s[1] {
		t.Errorf("two builds with the same SOURCE_DATE_EPOCH differ: %v", md5s)
	}
}

// Two versions built to the same file name: verify tells them apart by
// size and digest, never by taking the first entry with the file name. (On
// the old main a correct v1 image was "corrupt or incomplete" because the
// catalogue lists v2 first.)
func TestVerifyCatalogueVersionsShareFileName(t *testing.T) {
	md5sum := func(b []byte) string { // expected values come from md5sum
		cmd := exec.Command("md5sum")
		cmd.Stdin = bytes.NewReader(b)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return string(out[:32])
	}
	for _, tc := range []struct {
		name   string
		v1, v2 []byte
	}{
		{"same size", []byte("conpaas version 1\n"), []byte("conpaas version 2\n")},
		{"other size", []byte("conpaas 1\n"), []byte("conpaas version 2, longer\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "conpaas.img")
			cat := filepath.Join(dir, "catalogue.json")
			// Built in turn to the same output, each recorded.
			for _, v := range []struct {
				version string
				data    []byte
			}{{"1", tc.v1}, {"2", tc.v2}} {
				os.WriteFile(img, v.data, 0o644)
				if code, out, errOut := run(t, "catalogue", "add", "-f", cat, "--version", v.version, img); code != 0 {
					t.Fatalf("catalogue add: %d %s%s", code, out, errOut)
				}
			}
			c, err := catalogue.Load(cat)
			if err != nil || len(c.Artifacts) != 2 || c.Artifacts[0].Version != "2" {
				t.Fatalf("catalogue: %v %+v (want v2 listed first, as the catalogue sorts)", err, c)
			}
			// The v1 image, downloaded again: sound, and it is v1.
			os.WriteFile(img, tc.v1, 0o644)
			code, out, errOut := run(t, "verify", img)
			if want := "OK (md5 " + md5sum(tc.v1) + ", from catalogue " + cat + " (conpaas 1))"; code != 0 || !strings.Contains(out, want) {
				t.Errorf("v1 image: exit %d, want %q:\n%s%s", code, want, out, errOut)
			}
			// Moved away from the catalogue: found by file name, same answer.
			other := filepath.Join(t.TempDir(), "conpaas.img")
			os.WriteFile(other, tc.v1, 0o644)
			if code, out, errOut := run(t, "verify", "--catalogue", cat, other); code != 0 || !strings.Contains(out, "(conpaas 1))") {
				t.Errorf("v1 image elsewhere: exit %d:\n%s%s", code, out, errOut)
			}
			// --version 2 asks for v2: the v1 bytes are not it.
			if code, out, errOut := run(t, "verify", "--version", "2", img); code != 1 || !strings.Contains(out, "but catalogue "+cat+" (conpaas 2) says "+md5sum(tc.v2)) {
				t.Errorf("v1 image as v2: exit %d:\n%s%s", code, out, errOut)
			}
			// Damaged (one byte flipped): neither version; both listed.
			bad := append([]byte(nil), tc.v1...)
			bad[0] ^= 1
			os.WriteFile(img, bad, 0o644)
			code, out, errOut = run(t, "verify", img)
			want := "md5 is " + md5sum(bad) + " but catalogue " + cat + " lists conpaas 2 (md5 " + md5sum(tc.v2) + "), conpaas 1 (md5 " + md5sum(tc.v1) + "): the file is none of them"
			if tc.name == "other size" {
				// Only v1 has this size: the file is checked against v1.
				want = "md5 is " + md5sum(bad) + " but catalogue " + cat + " (conpaas 1) says " + md5sum(tc.v1)
			}
			if code != 1 || !strings.Contains(out, want) {
				t.Errorf("damaged v1: exit %d, want %q:\n%s%s", code, want, out, errOut)
			}
		})
	}
}

// -c with two lines of the same file name in other directories: the
// file is checked against both and passes if it is one of them.
func TestVerifySumFileSameNames(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "conpaas.img")
	os.WriteFile(img, []byte("hello\n"), 0o644)
	sums := filepath.Join(dir, "SUMS")
	// b1946... is md5sum's "hello\n".
	os.WriteFile(sums, []byte("00000000000000000000000000000000  a/conpaas.img\nb1946ac92492d2347c6235b4d2611184  b/conpaas.img\n"), 0o644)
	if code, out, errOut := run(t, "verify", "-c", sums, img); code != 0 || !strings.Contains(out, "from "+sums+" line 2") {
		t.Errorf("exit %d:\n%s%s", code, out, errOut)
	}
}

// -c with one path on two lines that disagree: the later line won, so a
// line saying the file is corrupt was ignored (md5sum -c says FAILED for
// it). Disagreeing lines of one algorithm are refused; lines of two
// algorithms must both hold; repeated agreeing ones, and lines of the same
// name in other directories (above), are as before.
func TestVerifySumFileConflicts(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "conpaas.img")
	os.WriteFile(img, []byte("hello\n"), 0o644)
	const good, bad = "b1946ac92492d2347c6235b4d2611184", "00000000000000000000000000000000"
	const goodSHA = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
	tests := []struct {
		name, sums string
		code       int
		want       string
	}{
		{"wrong md5, then right", bad + "  " + img + "\n" + good + "  " + img + "\n", 2, " on line 1 and on line 2 with different checksums: keep the one line that is right"},
		{"right md5, then wrong", good + "  " + img + "\n" + bad + "  " + img + "\n", 2, "with different checksums"},
		// Two algorithms: both lines must hold, each is checked (md5sum -c
		// and sha256sum -c would each check theirs).
		{"wrong md5, then right sha256", bad + "  " + img + "\n" + goodSHA + "  " + img + "\n", 1, "FAILED"},
		{"right md5, then wrong sha256", good + "  " + img + "\n" + strings.Repeat("0", 64) + "  " + img + "\n", 1, "sha256 is " + goodSHA + " but"},
		{"right sha256, then right md5", goodSHA + "  " + img + "\n" + good + "  " + img + "\n", 0, "OK (md5 " + good},
		{"BSD tags, both right", "MD5 (" + img + ") = " + good + "\nSHA256 (" + img + ") = " + goodSHA + "\n", 0, "OK (md5 " + good},
		{"two sha256 lines disagree", goodSHA + "  " + img + "\n" + good + "  " + img + "\n" + strings.Repeat("0", 64) + "  " + img + "\n", 2, "with different checksums"},
		{"the same line twice", good + "  " + img + "\n" + good + "  " + img + "\n", 0, "OK (md5 " + good},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sums := filepath.Join(dir, "SUMS")
			os.WriteFile(sums, []byte(tc.sums), 0o644)
			code, out, errOut := run(t, "verify", "-c", sums, img)
			if code != tc.code || !strings.Contains(out+errOut, tc.want) {
				t.Errorf("exit %d (want %d), want %q in:\n%s%s", code, tc.code, tc.want, out, errOut)
			}
		})
	}
}
