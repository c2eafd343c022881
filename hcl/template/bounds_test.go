package template

import (
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"

	"github.com/conpaas/cps/hcl/templates"
	"github.com/conpaas/cps/internal/input"
)

// Issue 15: `validate /dev/zero` grew without bound, and 1 MB of random
// bytes took 21 s and printed 14,045 error lines. Each now fails after a
// bounded read with a bounded report.
func TestBoundedTemplates(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewSource(15))
	binary := make([]byte, 1<<20)
	rng.Read(binary)
	// Valid UTF-8 garbage gets past the text check into the parser.
	text := make([]byte, 1<<20)
	const alphabet = "abc{}[]=\"\n (),.#$%0123456789"
	for i := range text {
		text[i] = alphabet[rng.Intn(len(alphabet))]
	}
	tests := []struct {
		path string
		want string
		is   error
	}{
		{"/dev/zero", "over the 1048576-byte limit", input.ErrTooLarge},
		{writeIn(t, dir, "big.hcl", make([]byte, 1<<20+1)), "over the 1048576-byte limit", input.ErrTooLarge},
		{writeIn(t, dir, "random.hcl", binary), "Not a text file", nil},
		{writeIn(t, dir, "nul.hcl", []byte("image \"x\" {\n  kind = \"raw\"\x00\n}\n")), "nul.hcl:2:15: error: Not a text file", nil},
		{writeIn(t, dir, "garbage.hcl", text), "more; fix these first", nil},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			_, err := Load(tc.path, Options{Context: t.Context()})
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("err = %.300v; want %q", err, tc.want)
			}
			if n := strings.Count(err.Error(), ": error: "); n > MaxDiagnostics {
				t.Errorf("%d diagnostics printed, at most %d wanted", n, MaxDiagnostics)
			}
		})
	}
}

// A -var-file is read like a template: before, one of 900 KB of zeros
// (a disk image given by mistake) printed 18 MB of diagnostics, each with
// the whole line, and random bytes a page of them; now one sentence.
func TestBoundedVarFiles(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "t.pkr.hcl")
	os.WriteFile(tmpl, []byte(good), 0o644)
	binary := make([]byte, 900_000)
	rand.New(rand.NewSource(15)).Read(binary)
	binary[0] = 0xff // not UTF-8 at its first byte, whatever the seed
	tests := []struct {
		path string
		want string
	}{
		{writeIn(t, dir, "zeros.pkrvars.hcl", make([]byte, 900_000)), "zeros.pkrvars.hcl:1:1: error: Not a text file; byte 0 is 0x00, which is not UTF-8 text; a variable file is an HCL text file"},
		{writeIn(t, dir, "random.pkrvars.hcl", binary), "random.pkrvars.hcl:1:1: error: Not a text file"},
		{writeIn(t, dir, "nul.pkrvars.hcl", []byte("cpus = 4\nmirror = \"x\x00\"\n")), "nul.pkrvars.hcl:2:12: error: Not a text file"},
		{"/dev/zero", "over the 1048576-byte limit"},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			_, err := Load(tmpl, Options{Context: t.Context(), VarFiles: []string{tc.path}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %.300v; want %q", err, tc.want)
			}
			if n := strings.Count(err.Error(), "error: "); n != 1 {
				t.Errorf("%d diagnostics printed, want 1", n)
			}
			if len(err.Error()) > 1000 {
				t.Errorf("%d bytes of diagnostics, want one short sentence", len(err.Error()))
			}
		})
	}
	// A good variable file still sets its variables.
	p, err := Load(tmpl, Options{Context: t.Context(), VarFiles: []string{writeIn(t, dir, "ok.pkrvars.hcl", []byte("cpus = 4\n"))}})
	if err != nil || p == nil {
		t.Fatalf("good variable file: %v", err)
	}
}

// FuzzLoad is the template loader's fuzz target: any bytes give a plan or
// an *Error, never a panic, and an error prints a bounded report.
func FuzzLoad(f *testing.F) {
	f.Add(string(templates.Default))
	f.Add(good)
	f.Add("image \"x\" {\n kind = \"raw\"\n size = \"4EiB\"\n alignment = \"3MiB\"\n}\n")
	f.Add("variable \"v\" {\n default = 1\n}\nlocals {\n a = var.v + local.a\n}\n")
	f.Add("image \"../../../tmp/x\" {\n kind = \"raw\"\n output = \"../../etc/x\"\n}\n")
	f.Add("\xff\xfe\x00")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, src string) {
		p, err := LoadSource("fuzz.pkr.hcl", []byte(src), dir, Options{Context: t.Context()})
		if err == nil {
			if p == nil || len(p.Images) == 0 {
				t.Fatalf("no error and no images: %+v", p)
			}
			return
		}
		var te *Error
		if !errors.As(err, &te) {
			return // e.g. a file() of an unreadable path
		}
		if n := strings.Count(err.Error(), "\n"); n > 4*(MaxDiagnostics+1) {
			t.Fatalf("%d lines of diagnostics", n)
		}
	})
}

// A snippet shows a window of a long line: before, a one-line template of
// 1 MB printed the whole megabyte under each of up to MaxDiagnostics
// diagnostics. Short lines are shown whole, as before.
func TestSnippetLongLines(t *testing.T) {
	long := strings.Repeat("a", 1000)
	at := func(col, endCol int) hcl.Range {
		return hcl.Range{Start: hcl.Pos{Line: 1, Column: col}, End: hcl.Pos{Line: 1, Column: endCol}}
	}
	tests := []struct {
		name string
		src  string
		r    hcl.Range
		want string
	}{
		{"short line whole", "x = !", at(5, 6), "\n    1 | x = !\n      |     ^"},
		{"long line, error at its start", "!" + long, at(1, 2),
			"\n    1 | !" + long[:159] + "...\n      | ^"},
		{"long line, error in the middle", long + "!" + long, at(1001, 1002),
			"\n    1 | ..." + long[:80] + "!" + long[:79] + "...\n      |    " + strings.Repeat(" ", 80) + "^"},
		{"long line, error at its end", long + "!", at(1001, 1002),
			"\n    1 | ..." + long[:159] + "!\n      |    " + strings.Repeat(" ", 159) + "^"},
		{"range past the window: carets stop at it", "!" + long, at(1, 1001),
			"\n    1 | !" + long[:159] + "...\n      | " + strings.Repeat("^", 163)},
		{"multi-byte text is cut on a rune boundary", strings.Repeat("é", 500) + "!", at(1001, 1002), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := snippet([]byte(tc.src), tc.r)
			if tc.want != "" && got != tc.want {
				t.Errorf("snippet =\n%q\nwant\n%q", got, tc.want)
			}
			if !utf8.ValidString(got) || len(got) > 2*snippetWidth+64 {
				t.Errorf("snippet of %d bytes (valid UTF-8: %v): %q", len(got), utf8.ValidString(got), got)
			}
		})
	}
}

// writeIn writes b to dir/name and returns that path.
func writeIn(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
