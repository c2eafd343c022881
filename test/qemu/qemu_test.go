package qemu

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/conpaas/cps/internal/testutil"
)

func TestBootRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no marker", Options{Image: "/etc/hostname"}, "no marker"},
		{"no image", Options{Image: "/nonexistent.img", Marker: regexp.MustCompile("x")}, "no such file"},
		{"no extra drive", Options{Image: "/etc/hostname", Drives: []string{"/nonexistent.img"}, Marker: regexp.MustCompile("x")}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Boot(context.Background(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// A blank disk does not boot: Boot gives up at the deadline, kills QEMU and
// returns the console so far (SeaBIOS saying it found nothing to boot).
func TestBootTimeoutShowsConsole(t *testing.T) {
	testutil.RequireTool(t, "qemu-system-x86_64")
	img := filepath.Join(t.TempDir(), "blank.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := Boot(context.Background(), Options{Image: img, Marker: regexp.MustCompile("CONPAAS-READY"), Timeout: 15 * time.Second, MemoryMiB: 128})
	if err == nil {
		t.Fatal("a blank disk booted")
	}
	if !strings.Contains(err.Error(), "the image did not boot") || !strings.Contains(err.Error(), "Booting from Hard Disk") {
		t.Fatalf("error lacks the reason or the console: %v", err)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("Boot returned after %s, deadline was 15s", el)
	}
}
