package disk

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/images/ptable"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/plan"
)

const sdSize = 31998345216

func TestLayout(t *testing.T) {
	tests := []struct {
		name    string
		size    int64
		align   int64
		table   string
		parts   []plan.Partition
		want    [][2]int64 // start, end
		wantErr string
	}{
		{
			name: "raw gpt bios+esp+root", size: 2 << 30, align: mib, table: ptable.GPT,
			parts: []plan.Partition{{Name: "bios", FS: "bios_grub", Size: mib}, {Name: "esp", FS: "esp", Size: 64 * mib}, {Name: "root", FS: "ext4"}},
			want:  [][2]int64{{mib, 2 * mib}, {2 * mib, 66 * mib}, {66 * mib, 2<<30 - gptTail}},
		},
		{
			name: "sdcard mbr swap at the end", size: sdSize, align: 4 * mib, table: ptable.MBR,
			parts: []plan.Partition{{Name: "boot", FS: "vfat", Size: 256 * mib}, {Name: "root", FS: "ext4"}, {Name: "swap", FS: "swap", Size: 1 << 30}},
			want: [][2]int64{
				{4 * mib, 260 * mib},
				{260 * mib, sdSize/(4*mib)*(4*mib) - 1<<30},
				{sdSize/(4*mib)*(4*mib) - 1<<30, sdSize / (4 * mib) * (4 * mib)},
			},
		},
		{
			name: "no fill", size: 64 * mib, align: mib, table: ptable.GPT,
			parts: []plan.Partition{{Name: "a", FS: "ext4", Size: 10 * mib}, {Name: "b", FS: "swap", Size: 3*mib + 512}},
			want:  [][2]int64{{mib, 11 * mib}, {11 * mib, 14*mib + 512}},
		},
		{name: "too small", size: 8 * mib, align: mib, table: ptable.GPT,
			parts:   []plan.Partition{{Name: "a", FS: "ext4", Size: 10 * mib}},
			wantErr: "set size to at least 12582912 bytes"},
		{name: "fill squeezed out", size: 16 * mib, align: 4 * mib, table: ptable.MBR,
			parts:   []plan.Partition{{Name: "boot", FS: "vfat", Size: 8 * mib}, {Name: "root", FS: "ext4"}, {Name: "swap", FS: "swap", Size: 4 * mib}},
			wantErr: "do not fit"},
		{name: "two fills", size: 64 * mib, table: ptable.GPT,
			parts:   []plan.Partition{{Name: "a", FS: "ext4"}, {Name: "b", FS: "ext4"}},
			wantErr: `"a" and "b" both fill`},
		{name: "five mbr", size: 64 * mib, table: ptable.MBR,
			parts:   make([]plan.Partition, 5),
			wantErr: "at most 4"},
		{name: "alignment not a power of two", size: 64 * mib, align: 3 * mib, table: ptable.GPT,
			parts:   []plan.Partition{{Name: "a", FS: "ext4"}},
			wantErr: "not a power of two"},
		{name: "bad table", size: 64 * mib, table: "apm",
			parts:   []plan.Partition{{Name: "a", FS: "ext4"}},
			wantErr: `unknown partition table "apm"`},
		{name: "odd size", size: 64 * mib, table: ptable.GPT,
			parts:   []plan.Partition{{Name: "a", FS: "ext4", Size: 1000}},
			wantErr: "not a multiple of 512"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Layout(tc.size, tc.align, tc.table, tc.parts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Layout error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, w := range tc.want {
				if got := [2]int64{tc.parts[i].Start, tc.parts[i].End}; got != w {
					t.Errorf("partition %d = %v, want %v", i, got, w)
				}
				if tc.parts[i].Start%tc.align != 0 {
					t.Errorf("partition %d starts at %d, not on a %d boundary", i, tc.parts[i].Start, tc.align)
				}
			}
		})
	}
}

type sfdiskJSON struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		Partitions []struct {
			Start int64  `json:"start"`
			Size  int64  `json:"size"`
			Type  string `json:"type"`
			UUID  string `json:"uuid"`
			Name  string `json:"name"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// TestWriteTableSfdisk writes both table kinds into sparse files and reads
// them back with util-linux's sfdisk, the reference reader.
func TestWriteTableSfdisk(t *testing.T) {
	testutil.RequireTool(t, "sfdisk")
	cases := []struct {
		table string
		size  int64
		align int64
		parts []plan.Partition
		types []string
	}{
		{ptable.GPT, 2 << 30, mib,
			[]plan.Partition{{Name: "bios", FS: "bios_grub", Size: mib}, {Name: "esp", FS: "esp", Size: 64 * mib}, {Name: "root", FS: "ext4"}},
			[]string{"21686148-6449-6E6F-744E-656564454649", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"}},
		{ptable.MBR, sdSize, 4 * mib,
			[]plan.Partition{{Name: "boot", FS: "vfat", Size: 256 * mib}, {Name: "root", FS: "ext4"}, {Name: "swap", FS: "swap", Size: 1 << 30}},
			[]string{"c", "83", "82"}},
	}
	for _, tc := range cases {
		t.Run(tc.table, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "disk.img")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(tc.size); err != nil {
				t.Fatal(err)
			}
			if err := Layout(tc.size, tc.align, tc.table, tc.parts); err != nil {
				t.Fatal(err)
			}
			if err := WriteTable(f, tc.size, tc.table, tc.parts, "seed-1"); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("sfdisk", "--json", path).Output()
			if err != nil {
				t.Fatalf("sfdisk --json: %v", err)
			}
			var got sfdiskJSON
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			pt := got.PartitionTable
			wantLabel := map[string]string{ptable.GPT: "gpt", ptable.MBR: "dos"}[tc.table]
			if pt.Label != wantLabel || len(pt.Partitions) != len(tc.parts) {
				t.Fatalf("sfdisk sees %s with %d partitions, want %s with %d:\n%s", pt.Label, len(pt.Partitions), wantLabel, len(tc.parts), out)
			}
			for i, p := range pt.Partitions {
				if p.Start*ptable.Sector != tc.parts[i].Start || (p.Start+p.Size)*ptable.Sector != tc.parts[i].End {
					t.Errorf("partition %d: sfdisk start %d size %d, want bytes %d-%d", i, p.Start, p.Size, tc.parts[i].Start, tc.parts[i].End)
				}
				if p.Start%(tc.align/ptable.Sector) != 0 {
					t.Errorf("partition %d starts at sector %d, not aligned to %d bytes", i, p.Start, tc.align)
				}
				if !strings.EqualFold(p.Type, tc.types[i]) {
					t.Errorf("partition %d type %s, want %s", i, p.Type, tc.types[i])
				}
				if tc.table == ptable.GPT {
					if !strings.EqualFold(p.UUID, PartUUID(ptable.GPT, tc.parts, i, "seed-1")) || p.Name != tc.parts[i].Name {
						t.Errorf("partition %d uuid %s name %q, want %s %q", i, p.UUID, p.Name, PartUUID(ptable.GPT, tc.parts, i, "seed-1"), tc.parts[i].Name)
					}
				}
			}
			if tc.table == ptable.MBR {
				if want := "0x" + PartUUID(ptable.MBR, tc.parts, 0, "seed-1")[:8]; pt.ID != want {
					t.Errorf("disk id %s, want %s", pt.ID, want)
				}
			}
			// sfdisk --verify reports overlaps, misalignment against the
			// table's own rules, and a wrong backup GPT.
			if out, err := exec.Command("sfdisk", "--verify", path).CombinedOutput(); err != nil || !strings.Contains(string(out), "No errors detected") {
				t.Errorf("sfdisk --verify: %v\n%s", err, out)
			}
			// Reading back with our own reader gives the same layout.
			kind, back, err := ptable.Read(f)
			if err != nil || kind != tc.table || len(back) != len(tc.parts) {
				t.Fatalf("ReadTable = %s, %d parts, %v", kind, len(back), err)
			}
			for i := range back {
				if back[i].Start != tc.parts[i].Start || back[i].End != tc.parts[i].End {
					t.Errorf("ReadTable partition %d = %d-%d, want %d-%d", i, back[i].Start, back[i].End, tc.parts[i].Start, tc.parts[i].End)
				}
				wantFS := tc.parts[i].FS
				if back[i].FS != wantFS {
					t.Errorf("ReadTable partition %d fs %q, want %q", i, back[i].FS, wantFS)
				}
			}
		})
	}
}

func TestDeterministicIDs(t *testing.T) {
	// Two calls, not one expression compared with itself: the same seed
	// must give the same identifier each time, another seed another one.
	g1, g2 := GUID("a", "disk"), GUID("a", "disk")
	if g1 != g2 || g1 == GUID("b", "disk") {
		t.Fatal("GUID must be a function of its seed")
	}
	d1, d2 := DiskID("a"), DiskID("a")
	if d1 != d2 || d1 == DiskID("b") {
		t.Fatal("DiskID must be a function of its seed")
	}
}
