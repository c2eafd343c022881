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

	"github.com/conpaas/cps/internal/cli"
	"github.com/conpaas/cps/internal/testutil"
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
	code, out, _ := run(t, "md5", "-c", sums)
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
		{"missing file", []string{"verify", "--md5", "b1946ac92492d2347c6235b4d2611184", filepath.Join(dir, "nope")}, 2, "no such file"},
		{"directory", []string{"verify", "--md5", "b1946ac92492d2347c6235b4d2611184", dir}, 2, "directory"},
		{"json", []string{"verify", "--json", "--md5", "b1946ac92492d2347c6235b4d2611184", other}, 0, `"ok": true`},
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
	code, out, errOut := run(t, "md5", "-c", filepath.Join(dir, "S"))
	if code != 0 || !strings.Contains(out, "a: OK") || !strings.Contains(errOut, "S: 2: improperly formatted") {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
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
	}
	for _, s := range steps {
		code, out, errOut := run(t, s.args...)
		if code != s.code || !strings.Contains(out+errOut, s.want) {
			t.Errorf("%v: exit %d (want %d), output lacks %q:\n%s%s", s.args, code, s.code, s.want, out, errOut)
		}
	}
}
