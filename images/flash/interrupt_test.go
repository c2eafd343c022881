package flash

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 15: an interrupted flash onto an existing target said only
// "context canceled", not that the card now holds a partial image. The
// flash is interrupted once its first bytes are on the target.
func TestInterruptedFlashSaysPartial(t *testing.T) {
	const size = 256 * mib
	img := filepath.Join(t.TempDir(), "img")
	data := bytes.Repeat([]byte("conpaas!"), size/8)
	os.WriteFile(img, data, 0o644)
	dst := garbage(t, size)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		f, _ := os.Open(dst)
		defer f.Close()
		b := make([]byte, 8)
		for ctx.Err() == nil {
			if f.ReadAt(b, 0); string(b) == "conpaas!" {
				cancel()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	_, err := Flash(ctx, img, dst, Options{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, dst) || !(strings.Contains(msg, "now holds a partial image") || strings.Contains(msg, "not verified")) {
		t.Errorf("the error does not say what %s now holds: %v", dst, err)
	}
	t.Log(msg)
}

// kill -9 left flash's .NAME.tmp-* file (sparse, the image's size) next
// to a new target, and a re-run did not remove it.
func TestKilledFlashLeftoverRemoved(t *testing.T) {
	if os.Getenv("CPS_FLASH_CHILD") != "" {
		// The child: flash slowly enough to be killed mid-way.
		Flash(context.Background(), os.Getenv("CPS_FLASH_IMG"), os.Getenv("CPS_FLASH_DST"), Options{})
		return
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	os.WriteFile(img, bytes.Repeat([]byte("conpaas!"), 256*mib/8), 0o644)
	dst := filepath.Join(dir, "new.img")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledFlashLeftoverRemoved$")
	cmd.Env = append(os.Environ(), "CPS_FLASH_CHILD=1", "CPS_FLASH_IMG="+img, "CPS_FLASH_DST="+dst)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var tmp string
	for end := time.Now().Add(60 * time.Second); tmp == "" && time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		m, _ := filepath.Glob(filepath.Join(dir, ".new.img.tmp-*"))
		if len(m) == 1 {
			tmp = m[0]
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if tmp == "" {
		t.Fatal("the child never created its temporary file")
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Skip("the child finished before it was killed")
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(tmp, old, old)
	if _, err := Flash(t.Context(), img, dst, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); err == nil {
		t.Errorf("%s, left by the killed run, is still there", tmp)
	}
}
