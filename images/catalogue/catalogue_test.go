package catalogue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
	"time"
)

func TestPutFindRegistration(t *testing.T) {
	c := &Catalogue{}
	c.Put(Artifact{Name: "conpaas", Version: "2.1.0", MD5: "a"})
	if err := c.SetRegistration("conpaas", "2.1.0", Registration{Cloud: "ec2", Target: "ec2-ebs", Region: "us-east-1", ImageID: "ami-14f2d903"}); err != nil {
		t.Fatal(err)
	}
	// Same bytes rebuilt: registrations stay; other bytes: they go.
	c.Put(Artifact{Name: "conpaas", Version: "2.1.0", MD5: "a"})
	if len(c.Find("conpaas").Registered) != 1 {
		t.Error("a reproducible rebuild lost its registrations")
	}
	c.Put(Artifact{Name: "conpaas", Version: "2.1.0", MD5: "b"})
	if len(c.Find("conpaas").Registered) != 0 {
		t.Error("new bytes kept registrations of the old ones")
	}
	if err := c.SetRegistration("nope", "", Registration{}); err == nil || !strings.Contains(err.Error(), "cpsimage build") {
		t.Errorf("unknown artifact: %v", err)
	}
}

// goodEntry is a complete artifact; the sums are md5sum's and sha256sum's
// of "hello\n".
const goodEntry = `{"name": "conpaas", "version": "1", "kind": "raw", "arch": "amd64", "file": "c.img", "size": 6,
     "md5": "b1946ac92492d2347c6235b4d2611184", "sha256": "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
     "built": "2024-01-01T00:00:00Z"}`

// Every malformed catalogue is refused, each problem at its line and
// column (counted by hand in the input as written: lines and columns from
// 1, a column being a byte).
func TestParseErrorsHaveLineCol(t *testing.T) {
	head := "{\n  \"schema_version\": 1,\n  \"artifacts\": [\n    "
	entry := func(edit string) string { // goodEntry with one field replaced
		k, _, _ := strings.Cut(edit, ":")
		i := strings.Index(goodEntry, k)
		j := i + strings.IndexAny(goodEntry[i:], ",}")
		return goodEntry[:i] + edit + goodEntry[j:]
	}
	for _, tc := range []struct {
		name, in string
		want     []string // "line L, column C: text", one per problem
	}{
		{"valid", head + goodEntry + "\n  ]\n}\n", nil},
		{"trailing text", head + goodEntry + "\n  ]\n}\n}\n", []string{"line 9, column 1: text after the catalogue's closing brace"}},
		{"second object pasted", "{\"schema_version\": 1, \"artifacts\": []} {\"schema_version\": 1}", []string{"line 1, column 40: text after"}},
		{"negative size", head + entry(`"size": -1`) + "]}", []string{`line 4, column 98: artifact "conpaas" version "1": size -1 is negative`}},
		{"md5 zz", head + entry(`"md5": "zz"`) + "]}", []string{`line 5, column 13: artifact "conpaas" version "1": md5 "zz" is not 32 hexadecimal digits`}},
		{"md5 not hex", head + entry(`"md5": "g1946ac92492d2347c6235b4d2611184"`) + "]}", []string{`line 5, column 13: artifact "conpaas" version "1": md5 "g1946ac92492d2347c6235b4d2611184" is not 32`}},
		{"sha256 short", head + entry(`"sha256": "5891b5b5"`) + "]}", []string{`line 5, column 59: artifact "conpaas" version "1": sha256 "5891b5b5" is not 64 hexadecimal digits`}},
		{"duplicate name and version", head + goodEntry + ",\n    " + goodEntry + "]}", []string{`line 7, column 5: artifact "conpaas" version "1" is listed twice (also artifact 1, line 4, column 5): keep one`}},
		{"null artifact", head + "null]}", []string{"line 4, column 5: artifact 1 is null"}},
		{"string artifact", head + goodEntry + ", \"x\"]}", []string{`line 6, column 40: artifact 2 is the string "x", not an object`}},
		{"missing fields", head + `{"name": "conpaas", "version": "1"}]}`, []string{`line 4, column 5: artifact "conpaas" version "1" has no kind, arch, file, size, md5, sha256`}},
		{"empty name", head + entry(`"name": ""`) + "]}", []string{`line 4, column 14: artifact 1: name is empty`}},
		// Control characters split list rows and log lines (catalogue add -name "a<newline>b" wrote one).
		{"newline in name", head + entry(`"name": "a\nb"`) + "]}", []string{`line 4, column 14: artifact "a\nb" version "1": name "a\nb" holds the control character U+000A: use printable text`}},
		{"tab in version", head + entry(`"version": "1\t2"`) + "]}", []string{`line 4, column 36: artifact "conpaas" version "1\t2": version "1\t2" holds the control character U+0009`}},
		{"size not a number", head + entry(`"size": "6"`) + "]}", []string{`line 4, column 98: artifact 1: "size" is a string, not a whole number`}},
		{"size fraction", head + entry(`"size": 6.5`) + "]}", []string{`line 4, column 98: artifact 1: "size" is number 6.5, not a whole number`}},
		{"built not a time", head + entry(`"built": "yesterday"`) + "]}", []string{`line 6, column 15: artifact 1: "built" is not a time as RFC 3339 writes it`}},
		{"unknown field", head + strings.Replace(goodEntry, `"name": "conpaas"`, `"colour": "red"`, 1) + "]}", []string{`line 4, column 6: unknown field "colour" in artifact 1`}},
		{"field twice", head + entry(`"name": "a", "name": "b"`) + "]}", []string{`line 4, column 19: "name" appears twice in artifact 1 (first at line 4, column 6): keep one`}},
		{"registration without image", head + entry(`"built": "2024-01-01T00:00:00Z", "registrations": [{"cloud": "ec2", "target": "ec2-ebs"}]`) + "]}", []string{`line 6, column 57: registration 1 of artifact "conpaas" version "1" has no image_id`}},
		{"registrations null entry", head + entry(`"built": "2024-01-01T00:00:00Z", "registrations": [null]`) + "]}", []string{`line 6, column 57: registration 1 of artifact "conpaas" version "1" is null`}},
		// The typed values (types.go) are one of their constants.
		{"unknown kind", head + entry(`"kind": "floppy"`) + "]}", []string{`line 4, column 49: artifact "conpaas" version "1": kind "floppy" is not one of raw, sdcard, ova, lxc`}},
		{"unknown arch", head + entry(`"arch": "i386"`) + "]}", []string{`line 4, column 64: artifact "conpaas" version "1": arch "i386" is not one of amd64, arm64, armhf`}},
		{"unknown format", head + entry(`"built": "2024-01-01T00:00:00Z", "format": "iso"`) + "]}", []string{`line 6, column 49: artifact "conpaas" version "1": format "iso" is not one of raw, qcow2, vmdk, ova`}},
		{"boot mode twice", head + entry(`"built": "2024-01-01T00:00:00Z", "boot": ["bios", "bios"]`) + "]}", []string{`line 6, column 47: artifact "conpaas" version "1": boot "bios,bios": each boot mode is bios or uefi, once`}},
		{"unknown cloud", head + entry(`"built": "2024-01-01T00:00:00Z", "registrations": [{"cloud": "azure", "target": "x", "image_id": "i"}]`) + "]}", []string{`line 6, column 67: registration 1 of artifact "conpaas" version "1": cloud "azure" is not one of ec2, openstack`}},
		{"artifacts not a list", "{\"schema_version\": 1, \"artifacts\": {}}", []string{`line 1, column 36: "artifacts" is an object, not a list`}},
		{"a list, not a catalogue", "[null]", []string{"line 1, column 1: the catalogue is a list, not an object"}},
		{"empty file", "\n", []string{"line 1, column 1: the file is empty"}},
		{"newer schema", "{\n  \"schema_version\": 99\n}\n", []string{"line 2, column 21: schema_version 99 is newer than this program understands (1): upgrade cps"}},
		{"no schema", "{\"artifacts\": []}", []string{"line 1, column 1: missing schema_version"}},
		{"unknown top-level field", "{\n  \"schema_version\": 1,\n  \"colour\": 1\n}\n", []string{`line 3, column 3: unknown field "colour" in the catalogue`}},
		{"syntax", "{ not json", []string{"line 1, column 3: invalid character 'n'"}},
		// Truncated: the error is where the text stops (after the
		// comma), not at line 1, column 1 where the unfinished object
		// began.
		{"truncated", head + "{\"name\": \"conpaas\",\n", []string{"line 4, column 24: the file ends before the catalogue is complete"}},
		{"truncated in a string", head + "{\"name\": \"conp", []string{"line 4, column 19: the file ends before"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.in))
			if tc.want == nil {
				if err != nil || len(c.Artifacts) != 1 || c.Artifacts[0].Size != 6 {
					t.Fatalf("valid catalogue: %v", err)
				}
				return
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) = %v, want a *ParseError", tc.in, err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Errorf("%d problems, want %d:\n%v", len(lines), len(tc.want), err)
			}
			for i, w := range tc.want {
				if i >= len(lines) || !strings.HasPrefix(lines[i], w) {
					t.Errorf("problem %d: want prefix %q, got:\n%v", i+1, w, err)
				}
			}
		})
	}
}

// Load names the file on every problem's line.
func TestLoadNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalogue.json")
	os.WriteFile(path, []byte("{\"schema_version\": 1, \"artifacts\": [null, null]}"), 0o644)
	_, err := Load(path)
	want := "catalogue " + path + ": line 1, column 37: artifact 1 is null"
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "\ncatalogue "+path+": line 1, column 43: artifact 2 is null") {
		t.Errorf("Load: %v\nwant each line to start with the path, the first %q", err, want)
	}
}

// Load read its file whole: `catalogue list -f /dev/zero` grew to 19 GB
// until the kernel killed it (and other processes risked the same). It
// reads at most MaxFileSize bytes and says the file is not a catalogue.
// (Sparse files stand in for /dev/zero, so a regression fails, not OOMs.)
func TestLoadBounded(t *testing.T) {
	dir := t.TempDir()
	sparse := func(name string, size int64) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, size); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, path, want string
	}{
		{"over the limit", sparse("zeros.json", MaxFileSize+1), "is over 67108864 bytes, far more than a catalogue holds: is it the right file?"},
		{"a disk image", sparse("disk.img", 256<<20), "far more than a catalogue holds"},
		{"at the limit: parsed (and refused as JSON)", sparse("limit.json", MaxFileSize), "line 1, column 1"},
		{"a directory", dir, "is a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load(%s) = %.200v; want %q", filepath.Base(tc.path), err, tc.want)
			}
		})
	}
}

// Lower-case hex is what md5sum prints; upper case is read as the same
// digest.
func TestParseLowersDigests(t *testing.T) {
	in := "{\"schema_version\": 1, \"artifacts\": [" + strings.Replace(goodEntry, "b1946ac92492d2347c6235b4d2611184", "B1946AC92492D2347C6235B4D2611184", 1) + "]}"
	c, err := Parse([]byte(in))
	if err != nil || c.Artifacts[0].MD5 != "b1946ac92492d2347c6235b4d2611184" {
		t.Fatalf("Parse: %v %+v", err, c)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"schema_version":1,"artifacts":[{"name":"conpaas","version":"2.1.0","kind":"raw","arch":"amd64","file":"conpaas.img","size":1,"md5":"x","sha256":"y","built":"2023-11-14T22:13:20Z"}]}`))
	f.Add([]byte(`{"schema_version":1,"artifacts":[` + goodEntry + `]}`))
	f.Add([]byte(`{"schema_version":1,"artifacts":[` + goodEntry + `,` + goodEntry + `]} x`))
	f.Add([]byte(`{"schema_version":1,"artifacts":[null,{"registrations":[null,{"cloud":1}]}]}`))
	f.Add([]byte(`{"schema_version":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		// Whatever parses must survive a round trip.
		b, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(b); err != nil {
			t.Fatalf("round trip of %q failed: %v", data, err)
		}
	})
}

// Concurrent writers (several cpsimage processes) lose no update.
func TestUpdateConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalogue.json")
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			err := Update(path, func(c *Catalogue) error {
				c.Put(Artifact{Name: fmt.Sprintf("img%02d", i), Version: "1", Kind: "raw", Arch: "amd64", File: fmt.Sprintf("img%02d.img", i),
					MD5: "d41d8cd98f00b204e9800998ecf8427e", SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", Built: time.Unix(0, 0).UTC()})
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Artifacts) != 20 {
		t.Errorf("%d artifacts after 20 concurrent updates", len(c.Artifacts))
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".catalogue.json.tmp-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", st.Mode())
	}
}

// Update refuses to write a catalogue it could not read back, and leaves
// the file as it was.
func TestUpdateRefusesInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalogue.json")
	err := Update(path, func(c *Catalogue) error {
		c.Put(Artifact{Name: "conpaas", Version: "1", Kind: "raw", Arch: "amd64", File: "c.img", Size: -1,
			MD5: "d41d8cd98f00b204e9800998ecf8427e", SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"})
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "size -1 is negative") {
		t.Errorf("Update with a negative size: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an invalid catalogue was written: %v", err)
	}
}

// Update made its lock file beside any path: -f /dev/full (as root) left
// /dev/full.lock, and -f in a missing directory said only "open
// ...lock: no such file or directory". Both are refused first, in one
// sentence, and nothing is created.
func TestUpdateRefusesPaths(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.json")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"FIFO", fifo, "catalogue " + fifo + " is not a regular file (p---------): pass -f with the path of a catalogue file"},
		{"directory", dir, "is not a regular file (d---------)"},
		{"missing directory", filepath.Join(dir, "nope", "catalogue.json"), "cannot write catalogue " + filepath.Join(dir, "nope", "catalogue.json") + ": its directory " + filepath.Join(dir, "nope") + " does not exist; create it first or pass another -f"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			called := false
			err := Update(tc.path, func(*Catalogue) error { called = true; return nil })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want %q", err, tc.want)
			}
			if called {
				t.Error("the update ran")
			}
			if _, err := os.Stat(tc.path + ".lock"); err == nil {
				t.Errorf("%s.lock was created", tc.path)
			}
		})
	}
}
