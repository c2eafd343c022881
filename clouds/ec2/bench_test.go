package ec2

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/conpaas/cps/clouds/register"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/plan"
	"github.com/conpaas/cps/test/ec2fake"
)

// TestUploadThroughput uploads a sparse image to the EBS fake with 16
// parallel blocks and with one, and checks that only data blocks were
// sent, with 20 ms of simulated round trip per block. By default it is small; scripts/bench/ec2.sh runs it with a 2 GiB
// image holding 600 MB of data (CPS_BENCH_DATA_MB) and prints the figures.
func TestUploadThroughput(t *testing.T) {
	dataMB := 24
	if v, err := strconv.Atoi(os.Getenv("CPS_BENCH_DATA_MB")); err == nil && v > 0 {
		dataMB = v
	}
	p := filepath.Join(t.TempDir(), "conpaas.img")
	f, _ := os.Create(p)
	f.Truncate(2 << 30)
	chunk := make([]byte, 1<<20)
	for i := 0; i < dataMB; i++ {
		rand.Read(chunk)
		f.WriteAt(chunk, int64(i)*3<<20) // 1 MiB of data every 3 MiB
	}
	f.Close()
	sums, err := checksum.File(context.Background(), p, checksum.Options{Algos: []checksum.Algo{checksum.MD5, checksum.SHA256}})
	if err != nil {
		t.Fatal(err)
	}
	art := register.Artifact{Path: p, Name: "bench", Version: "1", Kind: "raw", Arch: "amd64", Sums: sums, Boot: catalogue.BootModes{catalogue.BootBIOS}}
	var rates []float64
	for _, workers := range []int{16, 1} {
		fk := ec2fake.Start()
		fk.Latency = 20 * time.Millisecond // a round trip to an AWS region
		tg := target(fk, fk.Secret)
		tg.Workers = workers
		start := time.Now()
		if _, err := register.PrepareAndRun(context.Background(), tg, plan.Register{Region: "us-east-1"}, art, register.Options{}, ""); err != nil {
			t.Fatal(err)
		}
		el := time.Since(start)
		sent := fk.Requests["PutSnapshotBlock"]
		fk.Close()
		if want := dataMB * 2; sent != want {
			t.Errorf("%d blocks sent for %d MiB of data in 1 MiB runs (want %d: only data blocks)", sent, dataMB, want)
		}
		rate := float64(dataMB) / el.Seconds()
		rates = append(rates, rate)
		fmt.Printf("ebs upload: %2d workers: %d MiB of data in %d blocks of a 2 GiB image: %.1fs, %.0f MiB/s\n", workers, dataMB, sent, el.Seconds(), rate)
	}
	fmt.Printf("ebs upload: parallel/sequential = %.1fx\n", rates[0]/rates[1])
}
