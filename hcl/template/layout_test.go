package template

import (
	"strings"
	"testing"
)

// validate refuses a disk layout the build could not make, each problem
// at the template attribute it is about (line:col counted in the template
// as written below), before any build starts. On the old main every one of
// these templates was "valid" and the build failed after bootstrapping.
func TestLayoutRefusedAtAttribute(t *testing.T) {
	img := func(attrs, parts string) string {
		return "image \"disk\" {\n  kind = \"raw\"\n" + attrs + parts + "}\n"
	}
	root := "  partition \"root\" {\n    fs    = \"ext4\"\n    mount = \"/\"\n  }\n"
	for _, tc := range []struct {
		name, src string
		want      []string // "line:col: error: Summary; Detail prefix", one per diagnostic
	}{
		{"1 TiB partition in a 10 MiB disk", img("  size = \"10MiB\"\n",
			"  partition \"data\" {\n    fs   = \"ext4\"\n    size = \"1TiB\"\n  }\n"+root),
			[]string{`6:12: error: Partitions do not fit; Partition "data" (1 TiB) does not fit in the 10 MiB disk (9420288 bytes (8.98 MiB) usable after the partition table); make it smaller or set the image's size to at least 1048578 MiB`}},
		{"partitions together too big", img("  size = \"10MiB\"\n",
			"  partition \"a\" {\n    fs   = \"ext4\"\n    size = \"6MiB\"\n  }\n  partition \"b\" {\n    fs   = \"ext4\"\n    size = \"6MiB\"\n    mount = \"/\"\n  }\n"),
			[]string{`3:10: error: Partitions do not fit; The partitions do not fit in an image of 10485760 bytes; set size to at least`}},
		{"512-byte disk", img("  size = 512\n", root),
			[]string{`3:10: error: Invalid size; Size 512 bytes is too small: an image is at least 1 MiB`}},
		{"4 EiB disk", img("  size = 4611686018427387904\n", root),
			[]string{`3:10: error: Invalid size; Size 4 EiB is over the 16 TiB limit`}},
		{"MBR disk over 2 TiB", img("  size = \"3TiB\"\n  partition_table = \"mbr\"\n", root),
			[]string{`3:10: error: Invalid size; Size 3 TiB is over the 2 TiB an MBR table can address; use partition_table = "gpt"`}},
		{"GPT below 2 MiB", img("  size = \"1MiB\"\n", root),
			[]string{`3:10: error: Invalid size; Size 1 MiB is too small for a GPT disk`}},
		{"alignment 3MiB", img("  alignment = \"3MiB\"\n", root),
			[]string{`3:15: error: Invalid alignment; Alignment 3 MiB is not a power of two`}},
		{"alignment not a sector multiple", img("  alignment = 1000\n", root),
			[]string{`3:15: error: Invalid alignment; alignment must be a multiple of 512 bytes`}},
		{"alignment 2 GiB", img("  alignment = \"2GiB\"\n", root),
			[]string{`3:15: error: Invalid alignment; Alignment 2 GiB is over 1 GiB`}},
		{"five MBR partitions", img("  partition_table = \"mbr\"\n",
			strings.Repeat("  partition \"p\" {\n    fs   = \"none\"\n    size = \"1MiB\"\n  }\n", 0)+
				"  partition \"a\" {\n    fs   = \"none\"\n    size = \"1MiB\"\n  }\n  partition \"b\" {\n    fs   = \"none\"\n    size = \"1MiB\"\n  }\n  partition \"c\" {\n    fs   = \"none\"\n    size = \"1MiB\"\n  }\n  partition \"d\" {\n    fs   = \"none\"\n    size = \"1MiB\"\n  }\n"+root),
			[]string{`3:21: error: Invalid partition table; An MBR table holds at most 4 primary partitions, the image declares 5`}},
		// An invalid size is one error, not also "Two fill partitions"
		// (the old main counted the partition as filling).
		{"invalid partition size", img("",
			"  partition \"swap\" {\n    fs   = \"swap\"\n    size = \"10 parsecs\"\n  }\n"+root),
			[]string{`5:12: error: Invalid size; "size": `}},
		// The kind's default partitions (raw: bios 1 MiB, root filling)
		// do not fit either: at the image's size, found by its Prepare.
		{"default partitions do not fit", "image \"disk\" {\n  kind = \"raw\"\n  size = \"2MiB\"\n}\n",
			[]string{`3:10: error: Partitions do not fit; The partitions do not fit in an image of 2097152 bytes; set size to at least 4194304 bytes (4 MiB).`}},
		{"two fill partitions", img("", "  partition \"data\" {\n    fs = \"ext4\"\n  }\n"+root),
			[]string{`6:3: error: Two fill partitions; partition "root" fills the rest of the disk`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadSource("t.pkr.hcl", []byte(tc.src), t.TempDir(), Options{})
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.src)
			}
			var got []string
			for _, l := range strings.Split(err.Error(), "\n") {
				if strings.HasPrefix(l, "t.pkr.hcl:") {
					got = append(got, strings.TrimPrefix(l, "t.pkr.hcl:"))
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("%d diagnostics, want %d:\n%v", len(got), len(tc.want), err)
			}
			for i, w := range tc.want {
				if i >= len(got) || !strings.HasPrefix(got[i], w) {
					t.Errorf("diagnostic %d: want prefix %q:\n%v", i+1, w, err)
				}
			}
		})
	}
}

// Layouts the build makes are accepted: the sizes at the limits, a
// partition exactly filling the disk.
func TestLayoutAccepted(t *testing.T) {
	for _, src := range []string{
		"image \"a\" {\n  kind = \"raw\"\n  size = \"16TiB\"\n}\n",
		"image \"a\" {\n  kind = \"raw\"\n  size = \"2MiB\"\n  partition_table = \"mbr\"\n  partition \"root\" {\n    fs = \"ext4\"\n    mount = \"/\"\n  }\n}\n",
		"image \"a\" {\n  kind = \"raw\"\n  size = \"2047GiB\"\n  partition_table = \"mbr\"\n}\n",
		"image \"a\" {\n  kind = \"sdcard\"\n  alignment = \"8MiB\"\n}\n",
		"image \"a\" {\n  kind = \"lxc\"\n  size = \"1MiB\"\n}\n",
	} {
		if _, err := LoadSource("t.pkr.hcl", []byte(src), t.TempDir(), Options{}); err != nil {
			t.Errorf("refused:\n%s\n%v", src, err)
		}
	}
}
