package testutil

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// Extract copies n bytes at off of the file at path into a new file and
// returns its path: a partition of a disk image for tools that take no
// offset (fsck.vfat, dumpe2fs).
func Extract(t testing.TB, path string, off, n int64) string {
	t.Helper()
	src, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p := filepath.Join(t.TempDir(), "part.img")
	dst, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, io.NewSectionReader(src, off, n)); err != nil {
		t.Fatal(err)
	}
	return p
}
