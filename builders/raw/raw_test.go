package raw

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/plan"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		name  string
		img   plan.Image
		want  string // error substring, "" for success
		parts []string
	}{
		{"defaults: BIOS only", plan.Image{Name: "a", Size: 1 << 30}, "", []string{"bios_grub", "ext4"}},
		{"hybrid", plan.Image{Name: "a", Size: 1 << 30, Bootloader: plan.Bootloader{BIOS: true, UEFI: true}}, "", []string{"bios_grub", "esp", "ext4"}},
		{"arm", plan.Image{Name: "a", Size: 1 << 30, Arch: "arm64"}, `makes x86_64 images (arch = "amd64"), not "arm64"`, nil},
		{"raspi loader", plan.Image{Name: "a", Size: 1 << 30, Bootloader: plan.Bootloader{Type: "raspi"}}, `bootloader type "grub", not "raspi"`, nil},
		{"no size", plan.Image{Name: "a"}, "size is not set", nil},
		{"no root", plan.Image{Name: "a", Size: 1 << 30, Partitions: []plan.Partition{{Name: "b", FS: "bios_grub", Size: 1 << 20}, {Name: "d", FS: "ext4", Mount: "/srv"}}}, `exactly one ext4 partition with mount = "/"`, nil},
		{"GPT BIOS without bios_grub", plan.Image{Name: "a", Size: 1 << 30, Partitions: []plan.Partition{{Name: "r", FS: "ext4", Mount: "/"}}}, `fs = "bios_grub"`, nil},
		{"UEFI without ESP", plan.Image{Name: "a", Size: 1 << 30, Bootloader: plan.Bootloader{UEFI: true}, Partitions: []plan.Partition{{Name: "r", FS: "ext4", Mount: "/"}}}, `fs = "esp"`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.img
			err := Prepare(&img)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var fs []string
			for _, p := range img.Partitions {
				fs = append(fs, p.FS)
			}
			if strings.Join(fs, ",") != strings.Join(tc.parts, ",") {
				t.Errorf("partitions %v, want %v", fs, tc.parts)
			}
		})
	}
}

// A root tree bigger than its partition is refused before anything is
// written, with the image size that would do.
func TestFitCheck(t *testing.T) {
	root := t.TempDir()
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(i)
	}
	for i := 0; i < 30; i++ {
		os.WriteFile(filepath.Join(root, "f"+string(rune('a'+i))), big, 0o644)
	}
	img := &plan.Image{Name: "conpaas", Size: 150 << 20}
	small := plan.Partition{Name: "root", Start: 1 << 20, End: 149 << 20}
	err := fitCheck(root, img, small)
	if err == nil || !strings.Contains(err.Error(), "set size to at least") || !strings.Contains(err.Error(), `partition "root" has 148 MiB`) {
		t.Fatalf("err = %v", err)
	}
	roomy := plan.Partition{Name: "root", Start: 1 << 20, End: 400 << 20}
	if err := fitCheck(root, img, roomy); err != nil {
		t.Fatal(err)
	}
}

// A mirror that cannot be reached fails the build with one sentence naming
// the mirror, and leaves nothing in the output directory.
func TestBuildBadMirror(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "mmdebstrap")
	dir := t.TempDir()
	img := smallImage(filepath.Join(dir, "conpaas.img"))
	img.Distribution.Mirror = "http://127.0.0.1:9/debian"
	img.Distribution.CacheDir = filepath.Join(t.TempDir(), "cache")
	p := &plan.Plan{InputsDigest: "d", Images: []plan.Image{*img}}
	_, err := Builder{}.Build(context.Background(), p, img, builders.Options{})
	if err == nil || !strings.Contains(err.Error(), "cannot download packages from http://127.0.0.1:9/debian") {
		t.Fatalf("err = %v", err)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 0 {
		t.Errorf("failed build left %v in the output directory", left)
	}
}
