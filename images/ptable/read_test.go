package ptable

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/conpaas/cps/internal/testutil"
)

// validGPT is a 1 MiB disk with a GPT of three partitions, written by
// go-diskfs (the writer the builders use).
func validGPT(t testing.TB) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gpt.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 1 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	tab := &gpt.Table{LogicalSectorSize: Sector, PhysicalSectorSize: Sector, ProtectiveMBR: true, Partitions: []*gpt.Partition{
		{Index: 1, Start: 64, End: 127, Type: gpt.BIOSBoot, Name: "bios"},
		{Index: 2, Start: 128, End: 1023, Type: gpt.EFISystemPartition, Name: "esp"},
		{Index: 3, Start: 1024, End: 2000, Type: gpt.LinuxFilesystem, Name: "root"},
	}}
	if err := tab.Write(f, size); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func validMBR() []byte {
	b := make([]byte, 64<<10)
	e := b[446:]
	e[4] = 0x83
	binary.LittleEndian.PutUint32(e[8:], 8)
	binary.LittleEndian.PutUint32(e[12:], 100)
	b[510], b[511] = 0x55, 0xaa
	return b
}

// fixCRCs recomputes the primary header's CRCs after a mutation, so a
// mutated header reaches go-diskfs instead of being dropped on its CRC.
func fixCRCs(b []byte) {
	if len(b) < 1024 || string(b[512:520]) != "EFI PART" {
		return
	}
	h := b[512:1024]
	lba := binary.LittleEndian.Uint64(h[72:80])
	n := uint64(binary.LittleEndian.Uint32(h[80:84])) * uint64(binary.LittleEndian.Uint32(h[84:88]))
	if lba < uint64(len(b))/Sector && n <= uint64(len(b))-lba*Sector {
		binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(b[lba*Sector:lba*Sector+n]))
	}
	if hs := binary.LittleEndian.Uint32(h[12:16]); hs >= 20 && hs <= Sector {
		clear(h[16:20])
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:hs]))
	}
}

// The headers of issue 15: each crashed (makeslice panic) or exhausted
// memory in go-diskfs' loadEntries, reached from verify --structure,
// sdcard resize and verify --deep.
func TestReadCraftedGPT(t *testing.T) {
	backup := testutil.CraftedGPT(64<<10, 128, 128)
	last := len(backup) - Sector
	copy(backup[last:], backup[Sector:2*Sector])
	clear(backup[Sector : 2*Sector])
	binary.LittleEndian.PutUint32(backup[last+80:], 2147483647)
	binary.LittleEndian.PutUint64(backup[last+24:], uint64(last/Sector))
	binary.LittleEndian.PutUint64(backup[last+32:], 1)
	clear(backup[last+16 : last+20])
	binary.LittleEndian.PutUint32(backup[last+16:], crc32.ChecksumIEEE(backup[last:last+92]))

	for _, tc := range []struct {
		name string
		disk []byte
	}{
		{"count 2147483647 size 4294967295", testutil.CraftedGPT(64<<10, 2147483647, 4294967295)},
		{"count 4294967295 size 128", testutil.CraftedGPT(64<<10, 4294967295, 128)},
		{"entry size 256", testutil.CraftedGPT(64<<10, 128, 256)},
		{"entry size 0", testutil.CraftedGPT(64<<10, 128, 0)},
		{"array over 1 MiB", testutil.CraftedGPT(4<<20, 8193, 128)},
		{"array past the end", testutil.CraftedGPT(8<<10, 128, 128)},
		{"backup header count 2147483647", backup},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ReadAt(bytes.NewReader(tc.disk), int64(len(tc.disk)), "crafted.img")
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want a %q error", err, ErrInvalid)
			}
			t.Log(err)
		})
	}
	// A sane header with an empty array is a table without partitions.
	kind, parts, err := ReadAt(bytes.NewReader(testutil.CraftedGPT(64<<10, 128, 128)), 64<<10, "sane.img")
	if err != nil || kind != GPT || len(parts) != 0 {
		t.Fatalf("sane header: %s %v %v", kind, parts, err)
	}
}

func TestReadValid(t *testing.T) {
	kind, parts, err := ReadAt(bytes.NewReader(validGPT(t)), 1<<20, "gpt.img")
	if err != nil || kind != GPT || len(parts) != 3 || parts[2].Start != 1024*Sector || parts[2].End != 2001*Sector || parts[1].FS != "esp" {
		t.Fatalf("GPT: %s %+v %v", kind, parts, err)
	}
	kind, parts, err = ReadAt(bytes.NewReader(validMBR()), 64<<10, "mbr.img")
	if err != nil || kind != MBR || len(parts) != 1 || parts[0].Start != 8*Sector || parts[0].End != 108*Sector || parts[0].FS != "ext4" {
		t.Fatalf("MBR: %s %+v %v", kind, parts, err)
	}
}

// The random test: 7 of 300 mutations of a valid GPT (with the
// CRCs fixed up so the reader believes them) crashed. None may now.
func TestReadRandomMutations(t *testing.T) {
	orig := validGPT(t)
	rng := rand.New(rand.NewSource(15))
	for i := 0; i < 300; i++ {
		b := append([]byte(nil), orig[:64<<10]...)
		for j := 0; j < 1+rng.Intn(8); j++ {
			b[Sector+rng.Intn(Sector)] = byte(rng.Intn(256))
		}
		// Every fourth mutation also hits the entry array.
		if i%4 == 0 {
			b[2*Sector+rng.Intn(3*128)] = byte(rng.Intn(256))
		}
		fixCRCs(b)
		checkRead(t, b)
	}
}

// checkRead reads b and checks what a caller relies on: no panic, an
// error or partitions with sane byte ranges.
func checkRead(t *testing.T, b []byte) {
	t.Helper()
	kind, parts, err := ReadAt(bytes.NewReader(b), int64(len(b)), "fuzz.img")
	if err != nil {
		return
	}
	if kind != GPT && kind != MBR {
		t.Fatalf("kind %q", kind)
	}
	for _, p := range parts {
		if p.Start < 0 || p.End <= p.Start {
			t.Fatalf("partition %+v has a bad range", p)
		}
	}
}

// FuzzRead is the partition-table reader's fuzz target. With fix set the
// header CRCs are recomputed after mutation, so the fuzzer explores what
// a header says rather than stopping at its checksum.
func FuzzRead(f *testing.F) {
	f.Add(testutil.CraftedGPT(8<<10, 2147483647, 4294967295), false)
	f.Add(testutil.CraftedGPT(8<<10, 4294967295, 128), false)
	f.Add(testutil.CraftedGPT(24<<10, 128, 128), true)
	f.Add(validGPT(f)[:24<<10], true)
	f.Add(validMBR()[:4<<10], false)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, b []byte, fix bool) {
		if fix {
			fixCRCs(b)
		}
		checkRead(t, b)
	})
}
