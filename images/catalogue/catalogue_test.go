package catalogue

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
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

func TestParseErrorsHaveLineCol(t *testing.T) {
	cases := map[string]string{
		"{\n  \"schema_version\": 1,\n  \"artifacts\": [ { \"name\": 5 } ]\n}\n": "line 3",
		"{\n  \"schema_version\": 99\n}\n":                                       "schema",
		"{\n  \"schema_version\": 1,\n  \"colour\": 1\n}\n":                      "colour",
		"{ not json": "line 1",
	}
	for in, want := range cases {
		if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", in, err, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"schema_version":1,"artifacts":[{"name":"conpaas","version":"2.1.0","kind":"raw","arch":"amd64","file":"conpaas.img","size":1,"md5":"x","sha256":"y","built":"2023-11-14T22:13:20Z"}]}`))
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
				c.Put(Artifact{Name: fmt.Sprintf("img%02d", i), Version: "1", Built: time.Unix(0, 0).UTC()})
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
