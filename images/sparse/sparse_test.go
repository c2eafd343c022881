package sparse

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestExtentsAndCopy(t *testing.T) {
	dir := t.TempDir()
	src, _ := os.Create(filepath.Join(dir, "src"))
	defer src.Close()
	src.Truncate(64 << 20)
	src.WriteAt(bytes.Repeat([]byte{1}, 8192), 1<<20)
	src.WriteAt(bytes.Repeat([]byte{2}, 4096), 50<<20)
	ext, err := DataExtents(src)
	if err != nil {
		t.Fatal(err)
	}
	if DataBytes(ext) < 12288 || DataBytes(ext) > 1<<20 {
		t.Errorf("data bytes %d for 12 KiB written (extents %v)", DataBytes(ext), ext)
	}
	dst, _ := os.Create(filepath.Join(dir, "dst"))
	defer dst.Close()
	dst.Truncate(64 << 20)
	if _, err := CopyFile(dst, 0, src); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(src.Name())
	b, _ := os.ReadFile(dst.Name())
	if !bytes.Equal(a, b) {
		t.Error("copy differs")
	}
	dext, _ := DataExtents(dst)
	if DataBytes(dext) > 1<<20 {
		t.Errorf("the copy is not sparse: %d data bytes", DataBytes(dext))
	}
	if err := Punch(dst, 50<<20, 4096); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	dst.ReadAt(buf, 50<<20)
	if !IsZero(buf) {
		t.Error("a punched range must read as zeros")
	}
}
