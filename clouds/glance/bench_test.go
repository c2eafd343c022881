//go:build bench

package glance

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/conpaas/cps/clouds/register"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/internal/progress"
	"github.com/conpaas/cps/plan"
	"github.com/conpaas/cps/test/glanceserver"
)

// TestBenchGlance (scripts/bench/glance.sh) uploads a sparse image with
// clouds/glance and the same file with `curl -T` to the same glance-api.
func TestBenchGlance(t *testing.T) {
	size := envInt("CPS_BENCH_SIZE", 2<<30)
	data := envInt("CPS_BENCH_DATA", 300<<20)
	srv := glanceserver.Start(t)
	p := filepath.Join(t.TempDir(), "bench.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	// Data in 4 MiB chunks spread evenly over the image.
	chunk := int64(4 << 20)
	n := data / chunk
	buf := make([]byte, chunk)
	for i := int64(0); i < n; i++ {
		rand.Read(buf)
		if _, err := f.WriteAt(buf, i*(size/n)); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	progress.Quiet = true
	ctx := context.Background()
	tg := &Target{Endpoint: srv.URL}
	sc, _, _ := tg.Client(ctx, "")
	// The usual path: the image's MD5 is in the catalogue (the build wrote
	// it), so the upload hashes only SHA-512 (for os_hash_value) while
	// sending. Then the path for a file with no known sums, which hashes
	// md5+sha512 while sending.
	known, err := checksum.File(ctx, p, checksum.Options{Algos: []checksum.Algo{checksum.MD5}})
	if err != nil {
		t.Fatal(err)
	}
	timed := func(name string, sums checksum.Sums) time.Duration {
		t0 := time.Now()
		regs, err := register.PrepareAndRun(ctx, tg, plan.Register{}, register.Artifact{Path: p, Name: name, Arch: "amd64", Sums: sums}, register.Options{}, "")
		if err != nil {
			t.Fatal(err)
		}
		d := time.Since(t0)
		_ = images.Delete(ctx, sc, regs[0].ImageID).ExtractErr()
		return d
	}
	dCPS := timed("bench-cps", known)
	dHash := timed("bench-cps-hashing", checksum.Sums{})
	rf, _ := os.Open(p)
	r, _ := sparse.NewReader(ctx, rf)
	buf2 := make([]byte, 1<<20)
	for {
		if _, err := r.Read(buf2); err != nil {
			break
		}
	}
	disk := r.DiskBytes()
	rf.Close()

	var dCurl time.Duration
	curl, err := exec.LookPath("curl")
	if err == nil {
		im, err := images.Create(ctx, sc, images.CreateOpts{Name: "bench-curl", DiskFormat: "raw", ContainerFormat: "bare"}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		out, err := exec.Command(curl, "-sS", "-f", "-T", p, "-H", "Content-Type: application/octet-stream",
			srv.URL+"/v2/images/"+im.ID+"/file").CombinedOutput()
		dCurl = time.Since(t0)
		if err != nil {
			t.Fatalf("curl -T: %v: %s", err, out)
		}
	}
	mb := float64(size) / (1 << 20)
	fmt.Printf("%-28s %10s %12s %14s %14s\n", "glance upload", "seconds", "MiB/s", "bytes sent", "disk bytes read")
	fmt.Printf("%-28s %10.1f %12.1f %14d %14d\n", "cps (sha512 while sending)", dCPS.Seconds(), mb/dCPS.Seconds(), size, disk)
	fmt.Printf("%-28s %10.1f %12.1f %14d %14d\n", "cps (md5+sha512 while sending)", dHash.Seconds(), mb/dHash.Seconds(), size, disk)
	if dCurl > 0 {
		fmt.Printf("%-28s %10.1f %12.1f %14d %14d\n", "curl -T (dense read)", dCurl.Seconds(), mb/dCurl.Seconds(), size, size)
		fmt.Printf("ratio cps/curl time: %.2f (goal <= 1.2); hashing while sending: %.2f\n", dCPS.Seconds()/dCurl.Seconds(), dHash.Seconds()/dCurl.Seconds())
	}
}

func envInt(k string, d int64) int64 {
	var v int64
	if s := strings.TrimSpace(os.Getenv(k)); s != "" {
		if _, err := fmt.Sscan(s, &v); err == nil && v > 0 {
			return v
		}
	}
	return d
}
