package checksum

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// File on a sparse file gives the digests of its full byte stream (holes
// as zeros), for every algorithm at once.
func TestFileSparse(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sparse.img")
	f, _ := os.Create(p)
	f.WriteAt([]byte("head"), 0)
	f.WriteAt([]byte("middle"), 40<<20+7)
	f.Truncate(100<<20 + 3)
	f.Close()
	want, _ := os.ReadFile(p)
	sums, err := File(context.Background(), p, Options{Algos: []Algo{MD5, SHA1, SHA256, SHA512}})
	if err != nil {
		t.Fatal(err)
	}
	m, s1, s2, s5 := md5.Sum(want), sha1.Sum(want), sha256.Sum256(want), sha512.Sum512(want)
	for a, w := range map[Algo]string{MD5: hex.EncodeToString(m[:]), SHA1: hex.EncodeToString(s1[:]), SHA256: hex.EncodeToString(s2[:]), SHA512: hex.EncodeToString(s5[:])} {
		if sums.Get(a) != w {
			t.Errorf("%s = %s, want %s", a, sums.Get(a), w)
		}
	}
}

// Side files pass md5sum -c and sha256sum -c, and are byte for byte what
// md5sum prints, also for names md5sum escapes (issue 15: a name with a
// backslash or a newline was written unescaped).
func TestSideFilesPassMD5sum(t *testing.T) {
	for _, name := range []string{"conpaas.img", `back\slash.img`, "new\nline.img", "cr\r.img"} {
		dir := t.TempDir()
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte("image bytes"), 0o644)
		sums, err := File(context.Background(), p, Options{Algos: []Algo{MD5, SHA256}})
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteSideFiles(p, sums, MD5, SHA256); err != nil {
			t.Fatal(err)
		}
		for _, tool := range []string{"md5sum", "sha256sum"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Fatalf("%s missing", tool)
			}
			side := name + "." + strings.TrimSuffix(tool, "sum")
			cmd := exec.Command(tool, "-c", side)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s -c %q: %v\n%s", tool, side, err, out)
			}
			cmd = exec.Command(tool, "--", name)
			cmd.Dir = dir
			want, _ := cmd.Output()
			if got, _ := os.ReadFile(filepath.Join(dir, side)); string(got) != string(want) {
				t.Errorf("%s is %q, %s prints %q", side, got, tool, want)
			}
		}
	}
}

func TestCanceled(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, make([]byte, 1<<20), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := File(ctx, p, Options{}); err == nil {
		t.Error("a canceled context must stop hashing")
	}
}
