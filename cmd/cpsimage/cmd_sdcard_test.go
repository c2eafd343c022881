package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func sparseFile(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteAt([]byte("cps"), 0)
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFlashAndResizeCLI(t *testing.T) {
	dir := t.TempDir()
	img := sparseFile(t, dir, "sd.img", 31998345216)
	small := sparseFile(t, dir, "card16", 16_000_000_000)
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"flash: card too small", []string{"flash", img, small}, 2, "needs 31998345216 bytes"},
		{"flash: missing device", []string{"flash", img}, 2, "want IMAGE and DEVICE"},
		{"flash: missing image", []string{"flash", filepath.Join(dir, "nope.img"), small}, 1, "no such file"},
		// A refused argument, as the docs say: exit 2 (it was 1).
		{"flash: image is a FIFO", []string{"flash", fifo, filepath.Join(dir, "out.img")}, 2, "is not a regular file"},
		{"flash: image is a directory", []string{"flash", dir, filepath.Join(dir, "out.img")}, 2, "is not a regular file"},
		{"resize: no size", []string{"sdcard", "resize", img}, 2, "--size is required"},
		{"resize: bad unit", []string{"sdcard", "resize", img, "--size", "64XB"}, 2, "unknown unit"},
		{"resize: smaller", []string{"sdcard", "resize", img, "--size", "16GB"}, 2, "shrinking is not supported"},
		{"resize: not an SD image", []string{"sdcard", "resize", "--size", "64GB", img}, 1, "no readable partition table"},
		{"sdcard: unknown subcommand", []string{"sdcard", "grow"}, 2, "unknown sdcard subcommand"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := commands.Main(t.Context(), tc.args, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr.String(), tc.code, tc.want)
			}
		})
	}
	// The refused card was not touched.
	if st, _ := os.Stat(small); st.Size() != 16_000_000_000 {
		t.Fatal("a refused card changed size")
	}
}
