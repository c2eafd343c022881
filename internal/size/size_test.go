package size

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]int64{
		"512": 512, "512B": 512, " 3 GiB ": 3 << 30, "3G": 3 << 30, "3g": 3 << 30, "4M": 4 << 20, "1MiB": 1 << 20,
		"64GB": 64_000_000_000, "32gb": 32_000_000_000, "1kB": 1000, "1KB": 1000, "2TB": 2e12, "1TiB": 1 << 40,
		"1.5GiB": 3 << 29, "59.6GB": 59_600_000_000, "31998345216": 31998345216,
	} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, why := range map[string]string{
		"": "not a size", "GB": "not a size", "-1": "positive", "-5GiB": "positive", "- 1": "unknown unit", "0": "positive", "1.5": "whole number",
		"0.1KiB": "whole number", "12 parsecs": "unknown unit", "99999999999TiB": "too big", "1e9": "unknown unit",
	} {
		if _, err := Parse(in); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("Parse(%q) = %v, want an error saying %q", in, err, why)
		}
	}
}

// The rule is coreutils': truncate -s makes files of the sizes Parse reads.
func TestParseAgreesWithTruncate(t *testing.T) {
	truncate, err := exec.LookPath("truncate")
	if err != nil {
		t.Skip("no truncate")
	}
	for _, in := range []string{"3G", "3GB", "1K", "1KB", "5M", "5MB", "7MiB"} {
		f := t.TempDir() + "/f"
		if out, err := exec.Command(truncate, "-s", in, f).CombinedOutput(); err != nil {
			t.Fatalf("truncate -s %s: %v %s", in, err, out)
		}
		out, _ := exec.Command("stat", "-c", "%s", f).Output()
		want, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; truncate -s made %d bytes", in, got, err, want)
		}
	}
}
