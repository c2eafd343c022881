package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"encoding/hex"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conpaas/cps/internal/testutil"
)

// Issue 15, crashes: a crafted GPT header (valid CRC, entry count
// 2147483647 × size 4294967295, or 4294967295 × 128) panicked or ran out
// of memory in go-diskfs, reached from verify --structure, sdcard resize
// and verify --deep, and left /tmp/cps-verify-table-* behind. Each is now
// one clear error in a process that exits normally.
func TestCraftedGPTCommands(t *testing.T) {
	tmp := t.TempDir()
	for _, c := range [][2]uint32{{2147483647, 4294967295}, {4294967295, 128}} {
		dir := t.TempDir()
		disk := testutil.CraftedGPT(4<<20, c[0], c[1])
		img := filepath.Join(dir, "crafted.img")
		os.WriteFile(img, disk, 0o644)
		sum := md5.Sum(disk)
		hexsum := hex.EncodeToString(sum[:])
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		tw.WriteHeader(&tar.Header{Name: "crafted.img", Mode: 0o644, Size: int64(len(disk)), Typeflag: tar.TypeReg})
		tw.Write(disk)
		tw.Close()
		zw.Close()
		tgz := filepath.Join(dir, "crafted.img.tar.gz")
		os.WriteFile(tgz, buf.Bytes(), 0o644)
		tgzSum := md5.Sum(buf.Bytes())

		for _, tc := range []struct {
			args []string
			code int
			out  string
		}{
			{[]string{"verify", "--structure", "--md5", hexsum, img}, 1, "not a valid partition table"},
			{[]string{"verify", "--deep", "--md5", hex.EncodeToString(tgzSum[:]), tgz}, 1, "not a valid partition table"},
			{[]string{"sdcard", "resize", img, "--size", "8MiB"}, 1, "not a valid partition table"},
		} {
			cmd := cpsimage(t, tc.args...)
			cmd.Env = append(cmd.Env, "TMPDIR="+tmp)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != tc.code || !strings.Contains(out.String(), tc.out) || strings.Contains(out.String(), "panic") {
				t.Errorf("count %d size %d: %v: exit %d, output:\n%s\nwant exit %d and %q", c[0], c[1], tc.args, code, out.String(), tc.code, tc.out)
			}
		}
		if st, _ := os.Stat(img); st.Size() != 4<<20 {
			t.Errorf("resize changed the crafted image")
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("left in TMPDIR: %v", left)
	}
}

// Issue 15, data loss: `convert -o a.img a.img`, and `convert raw.vmdk`
// (whose default output is its own name), replaced the source with the
// VMDK and exited 0. Writing onto the input, by name or through a link,
// is refused and the source stays as it was.
func TestConvertRefusesItsInput(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("raw disk"), 8192) // 64 KiB
	for _, name := range []string{"a.img", "raw.vmdk"} {
		os.WriteFile(filepath.Join(dir, name), data, 0o644)
	}
	os.Symlink("a.img", filepath.Join(dir, "link.vmdk"))
	os.Link(filepath.Join(dir, "a.img"), filepath.Join(dir, "hard.vmdk"))
	for _, args := range [][]string{
		{"convert", "-o", filepath.Join(dir, "a.img"), filepath.Join(dir, "a.img")},
		{"convert", filepath.Join(dir, "raw.vmdk")},
		{"convert", "-o", filepath.Join(dir, "link.vmdk"), filepath.Join(dir, "a.img")},
		{"convert", "-o", filepath.Join(dir, "hard.vmdk"), filepath.Join(dir, "a.img")},
	} {
		code, _, errs := run(t, args...)
		if code != 2 || !strings.Contains(errs, "onto the input") {
			t.Errorf("%v: exit %d, %q; want a refusal (exit 2)", args, code, errs)
		}
	}
	for _, name := range []string{"a.img", "raw.vmdk"} {
		if b, _ := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(b, data) {
			t.Errorf("%s was changed", name)
		}
	}
	if fi, err := os.Lstat(filepath.Join(dir, "link.vmdk")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced")
	}
}

// Issue 15, crashes: `validate /dev/zero` grew without bound (4 GB RSS)
// and ignored SIGTERM; 1 MB of random bytes took 21 s and printed 14,045
// error lines. Both now stop at once with a short report (exit 2).
func TestValidateNonTemplates(t *testing.T) {
	random := make([]byte, 1<<20)
	rand.New(rand.NewSource(15)).Read(random)
	p := filepath.Join(t.TempDir(), "random.hcl")
	os.WriteFile(p, random, 0o644)
	for _, tc := range []struct{ path, want string }{
		{"/dev/zero", "limit"},
		{p, "Not a text file"},
	} {
		cmd := cpsimage(t, "validate", tc.path)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		cmd.Start()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("validate %s still running after 30 s", tc.path)
		}
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(errb.String(), tc.want) || strings.Count(errb.String(), "\n") > 5 {
			t.Errorf("validate %s: exit %d, stderr %.500q", tc.path, code, errb.String())
		}
	}
}
