package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
