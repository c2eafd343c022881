package releases

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// Every MD5 in the seeds is in the table, and every MD5 in the table is in
// the seeds: nothing missing, nothing invented.
func TestTableMatchesSeeds(t *testing.T) {
	var seeds string
	for _, f := range []string{"installation-2.1.0.rst", "installation-later.txt"} {
		b, err := os.ReadFile("testdata/" + f) // copies of ../shared/seeds
		if err != nil {
			t.Fatal(err)
		}
		seeds += string(b)
	}
	inSeeds := map[string]bool{}
	for _, m := range regexp.MustCompile(`MD5: ([0-9a-f]{32})`).FindAllStringSubmatch(seeds, -1) {
		inSeeds[m[1]] = true
	}
	inTable := map[string]bool{}
	for _, a := range Table {
		if a.MD5 != "" {
			inTable[a.MD5] = true
			if !inSeeds[a.MD5] {
				t.Errorf("%s: MD5 %s is not in the seeds", a.What, a.MD5)
			}
		}
		if a.File != "" && !strings.Contains(seeds, a.File) {
			t.Errorf("file %s is not in the seeds", a.File)
		}
	}
	for m := range inSeeds {
		if !inTable[m] {
			t.Errorf("seed MD5 %s is missing from the table", m)
		}
	}
}

func TestLookup(t *testing.T) {
	if a := ByFile("/downloads/ConPaaS-Nutshell-2.1.0.ova"); a == nil || a.MD5 != "81ef97d50c9f2cd6d029e5213a7a5d2a" {
		t.Errorf("ByFile = %+v", a)
	}
	if a := ByMD5("B469741091F8E282B3E22635963F5783"); a == nil || a.Release != "later" {
		t.Errorf("ByMD5 = %+v", a)
	}
	if ByFile("conpaas.img") != nil || ByMD5("") != nil {
		t.Error("unknown names must not match")
	}
}
