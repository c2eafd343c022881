package input

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/conpaas/cps/internal/testutil"
)

func TestRegularAndCharDevice(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("hello"), 0o644)
	f, err := Open(t.Context(), p)
	if err != nil || f.Kind != Regular || f.Size != 5 || !f.Seekable() {
		t.Fatalf("regular: %+v %v", f, err)
	}
	f.Close()
	z, err := Open(t.Context(), "/dev/zero")
	if err != nil || z.Kind != Stream || z.Size != -1 || z.RequireSeekable("convert") == nil {
		t.Fatalf("/dev/zero: %+v %v", z, err)
	}
	z.Close()
	if _, err := Open(t.Context(), t.TempDir()); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("directory: %v", err)
	}
}

// `validate /dev/zero` grew without bound: a bounded read of an endless
// input stops at its limit.
func TestReadFileLimit(t *testing.T) {
	if _, err := ReadFile(t.Context(), "/dev/zero", 1<<20); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("/dev/zero: %v", err)
	}
	p := filepath.Join(t.TempDir(), "big")
	os.WriteFile(p, make([]byte, 2048), 0o644)
	if _, err := ReadFile(t.Context(), p, 1024); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("big file: %v", err)
	}
	if b, err := ReadFile(t.Context(), p, 2048); err != nil || len(b) != 2048 {
		t.Fatalf("file at the limit: %d %v", len(b), err)
	}
}

func mkfifo(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A FIFO nobody writes to blocked md5 forever and ignored SIGINT/SIGTERM.
// The open now gives up when the context ends.
func TestFIFONoWriter(t *testing.T) {
	p := mkfifo(t)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Open(ctx, p)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no writer") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("open took %s after the context ended", d)
	}
}

// A FIFO whose writer opens but sends nothing: the read gives up when the
// context ends.
func TestFIFOSilentWriter(t *testing.T) {
	p := mkfifo(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	opened := make(chan *File, 1)
	go func() {
		f, err := Open(ctx, p)
		if err != nil {
			t.Error(err)
		}
		opened <- f
	}()
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	f := <-opened
	if f == nil {
		return
	}
	defer f.Close()
	time.AfterFunc(200*time.Millisecond, cancel)
	if _, err := f.Read(make([]byte, 10)); !errors.Is(err, context.Canceled) {
		t.Fatalf("read = %v, want context.Canceled", err)
	}
}

// Data written to a FIFO is read to EOF.
func TestFIFOStream(t *testing.T) {
	p := mkfifo(t)
	data := bytes.Repeat([]byte("cps "), 100000)
	go func() {
		w, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		w.Write(data)
		w.Close()
	}()
	f, err := Open(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Kind != Stream || f.Seekable() {
		t.Fatalf("FIFO is %s", f.Kind)
	}
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v; want %d", len(got), err, len(data))
	}
}

// A block device is sized with BLKGETSIZE64 (stat says 0), as
// blockdev --getsize64 reports it. Loop devices may be unavailable (no
// loop module, no privileges): then only the stat-says-0 premise is
// checked on whatever the test can see.
func TestBlockDevice(t *testing.T) {
	dev := testutil.LoopDevice(t, 3<<20+512)
	f, err := Open(t.Context(), dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out, err := exec.Command("blockdev", "--getsize64", dev).Output()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if f.Kind != Block || f.Size != want || want != 3<<20+512 {
		t.Fatalf("%s: kind %s size %d, blockdev says %d", dev, f.Kind, f.Size, want)
	}
	if st, _ := os.Stat(dev); st.Size() != 0 {
		t.Logf("stat says %d for %s", st.Size(), dev)
	}
}

// Block devices are sized with BLKGETSIZE64 (issue 15: `catalogue add
// /dev/loop1` recorded size 0). This needs no loop device: every block
// device the machine has is opened read-only and its size compared with
// what the kernel reports in /sys/class/block/NAME/size (512-byte
// sectors, whatever the device's logical sector size). Nothing is read or
// written.
func TestBlockDeviceSizesFromSysfs(t *testing.T) {
	names, _ := filepath.Glob("/sys/class/block/*")
	checked := 0
	for _, sys := range names {
		dev := filepath.Join("/dev", filepath.Base(sys))
		b, err := os.ReadFile(filepath.Join(sys, "size"))
		if err != nil {
			continue
		}
		sectors, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			continue
		}
		if st, err := os.Stat(dev); err != nil || st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 {
			continue // no node in this /dev (a container), or not a block device
		}
		f, err := Open(t.Context(), dev)
		if err != nil {
			continue // not readable here (permissions, a medium-less drive)
		}
		kind, size := f.Kind, f.Size
		f.Close()
		if kind != Block || size != sectors*512 {
			t.Errorf("%s: kind %v, size %d; the kernel says %d bytes (%d sectors)", dev, kind, size, sectors*512, sectors)
		}
		_, ssize, err := Stat(dev)
		if err != nil || ssize != sectors*512 {
			t.Errorf("Stat(%s) = %d, %v; want %d", dev, ssize, err, sectors*512)
		}
		checked++
	}
	if checked == 0 {
		t.Skip("no readable block device on this machine (the loop-device test covers hashing one)")
	}
	t.Logf("%d block devices sized", checked)
}
