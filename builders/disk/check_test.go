package disk

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/images/ptable"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/plan"
)

// CheckLayout names the attribute each problem is about (the template
// loader points at it) and does not change the image.
func TestCheckLayout(t *testing.T) {
	root := plan.Partition{Name: "root", FS: "ext4", Mount: "/"}
	sized := func(name string, n int64) plan.Partition { return plan.Partition{Name: name, FS: "ext4", Size: n} }
	for _, tc := range []struct {
		name string
		img  plan.Image
		want []Problem // Partition, Attr and a prefix of Msg
	}{
		{"fits", plan.Image{Kind: plan.KindRaw, Size: 10 * mib, PartitionTable: ptable.GPT, Partitions: []plan.Partition{sized("a", 2*mib), root}}, nil},
		{"no partitions yet", plan.Image{Kind: plan.KindRaw, Size: 2 << 30}, nil},
		{"ova has no disk of its own", plan.Image{Kind: plan.KindOVA}, nil},
		{"1 TiB partition in 10 MiB", plan.Image{Kind: plan.KindRaw, Size: 10 * mib, Partitions: []plan.Partition{sized("data", 1<<40), root}},
			[]Problem{{0, "size", `partition "data" (1 TiB) does not fit in the 10 MiB disk`}}},
		{"together too big", plan.Image{Kind: plan.KindRaw, Size: 10 * mib, Partitions: []plan.Partition{sized("a", 6*mib), sized("b", 6*mib)}},
			[]Problem{{-1, "size", "the partitions do not fit in an image of 10485760 bytes; set size to at least"}}},
		{"512 bytes", plan.Image{Kind: plan.KindRaw, Size: 512}, []Problem{{-1, "size", "size 512 bytes is too small"}}},
		{"4 EiB", plan.Image{Kind: plan.KindLXC, Size: 4 << 60}, []Problem{{-1, "size", "size 4 EiB is over the 16 TiB limit"}}},
		{"odd size", plan.Image{Kind: plan.KindLXC, Size: 2*mib + 1}, []Problem{{-1, "size", "size 2097153 is not a multiple of the 512-byte sector"}}},
		{"alignment 3 MiB", plan.Image{Kind: plan.KindSDCard, Size: 64 * mib, Alignment: 3 * mib, PartitionTable: ptable.MBR},
			[]Problem{{-1, "alignment", "alignment 3 MiB is not a power of two"}}},
		{"alignment 1000", plan.Image{Kind: plan.KindRaw, Size: 64 * mib, Alignment: 1000},
			[]Problem{{-1, "alignment", "alignment 1000 is not a multiple of the 512-byte sector"}}},
		{"unknown table", plan.Image{Kind: plan.KindRaw, Size: 64 * mib, PartitionTable: "apm"},
			[]Problem{{-1, "partition_table", `unknown partition table "apm"`}}},
		{"negative and two fills", plan.Image{Kind: plan.KindRaw, Size: 64 * mib, Partitions: []plan.Partition{sized("a", -512), root, {Name: "b", FS: "ext4"}}},
			[]Problem{{0, "size", `partition "a": size -512 is negative`}, {2, "size", `partitions "root" and "b" both fill`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := append([]plan.Partition(nil), tc.img.Partitions...)
			err := CheckLayout(&tc.img)
			for i := range before {
				if tc.img.Partitions[i] != before[i] {
					t.Errorf("CheckLayout changed partition %d: %+v", i, tc.img.Partitions[i])
				}
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("CheckLayout: %v", err)
				}
				return
			}
			le, ok := err.(*LayoutError)
			if !ok || len(le.Problems) != len(tc.want) {
				t.Fatalf("CheckLayout = %v, want %d problems", err, len(tc.want))
			}
			for i, w := range tc.want {
				p := le.Problems[i]
				if p.Partition != w.Partition || p.Attr != w.Attr || !strings.HasPrefix(p.Msg, w.Msg) {
					t.Errorf("problem %d = %+v, want %+v", i, p, w)
				}
			}
		})
	}
}

// Random layouts: whatever CheckLayout accepts, Layout places without
// overlaps inside the disk, and util-linux's sfdisk --verify (the
// reference reader) finds no error in the table written for it; whatever
// it refuses, Layout refuses too (the random images stay within the size
// and alignment limits, which only CheckLayout knows).
func TestCheckLayoutRandom(t *testing.T) {
	testutil.RequireTool(t, "sfdisk")
	r := rand.New(rand.NewPCG(1, 2)) // fixed seed: the same layouts every run
	accepted := 0
	for n := 0; n < 300; n++ {
		img := plan.Image{Kind: plan.KindRaw, Size: int64(1+r.IntN(64)) * mib, PartitionTable: []string{ptable.GPT, ptable.MBR}[r.IntN(2)],
			Alignment: []int64{512, 4096, mib, 4 * mib}[r.IntN(4)]}
		fill := r.IntN(4) // which partition fills (3: none)
		for i := 0; i < 1+r.IntN(4); i++ {
			p := plan.Partition{Name: string(rune('a' + i)), FS: "ext4"}
			if i != fill {
				p.Size = int64(1+r.IntN(16*2048)) * 512
			}
			img.Partitions = append(img.Partitions, p)
		}
		err := CheckLayout(&img)
		parts := append([]plan.Partition(nil), img.Partitions...)
		lerr := Layout(img.Size, img.Alignment, img.PartitionTable, parts)
		if err != nil {
			if lerr == nil {
				t.Errorf("CheckLayout refused what Layout places: %v\n%+v", err, img)
			}
			continue
		}
		if lerr != nil {
			t.Fatalf("CheckLayout accepted what Layout refuses: %v\n%+v", lerr, img)
		}
		accepted++
		if accepted > 40 {
			continue // sfdisk for the first 40 accepted layouts is enough
		}
		path := filepath.Join(t.TempDir(), "d.img")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(img.Size)
		if err := WriteTable(f, img.Size, img.PartitionTable, parts, "s"); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if out, err := exec.Command("sfdisk", "--verify", path).CombinedOutput(); err != nil || !strings.Contains(string(out), "No errors detected") {
			t.Errorf("sfdisk --verify of %+v: %v\n%s", parts, err, out)
		}
	}
	if accepted < 40 {
		t.Errorf("only %d of 300 random layouts accepted: the generator tests too little", accepted)
	}
}
