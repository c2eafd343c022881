package vmdk

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/conpaas/cps/internal/testutil"
)

// sourceImage is a sparse raw disk with data in scattered places,
// including a partial last grain and a grain that is zero in a data extent.
func sourceImage(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "src.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(size)
	for _, off := range []int64{0, 1 << 20, 33<<20 + 4096, 100 << 20, size - 1000} {
		b := make([]byte, 300<<10)
		rand.Read(b)
		if off+int64(len(b)) > size {
			b = b[:size-off]
		}
		f.WriteAt(b, off)
	}
	f.WriteAt(make([]byte, 128<<10), 50<<20) // allocated zeros
	return p
}

func TestWriteQemuImg(t *testing.T) {
	testutil.RequireTool(t, "qemu-img")
	for _, size := range []int64{200 << 20, 200<<20 + 3*512} {
		src := sourceImage(t, size)
		out := filepath.Join(t.TempDir(), "disk.vmdk")
		f, _ := os.Create(out)
		in, _ := os.Open(src)
		st, err := Write(context.Background(), f, in, Options{})
		in.Close()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if st.DataGrains == 0 || st.Capacity != size {
			t.Errorf("stats %+v", st)
		}
		if out, err := exec.Command("qemu-img", "check", out).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img check: %v\n%s", err, out)
		}
		info, err := exec.Command("qemu-img", "info", "--output=json", out).Output()
		if err != nil {
			t.Fatal(err)
		}
		var qi struct {
			Format      string `json:"format"`
			VirtualSize int64  `json:"virtual-size"`
			Specific    struct {
				Data struct {
					CreateType string `json:"create-type"`
				} `json:"data"`
			} `json:"format-specific"`
		}
		json.Unmarshal(info, &qi)
		if qi.Format != "vmdk" || qi.VirtualSize != size || qi.Specific.Data.CreateType != "streamOptimized" {
			t.Errorf("qemu-img info: %s", info)
		}
		if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "vmdk", src, out).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img compare: %v\n%s", err, out)
		}
	}
}
