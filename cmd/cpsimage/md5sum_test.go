package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/internal/testutil"
)

// md5sum -c is the reference for `cpsimage md5 -c` (issue 15: a one-space
// separator or leading spaces were "improperly formatted", names were
// resolved against the checksum file's directory, a missing file gave no
// reason and a "0 computed checksum(s) did NOT match" warning, and no
// valid line exited 2). Every case runs the real md5sum and cpsimage md5
// on the same files from the same working directory and compares standard
// output byte for byte, standard error line for line (md5sum's "md5sum: "
// prefix is ours "cpsimage md5: ") and the exit code.
func TestMD5CheckMatchesMD5sum(t *testing.T) {
	testutil.RequireTool(t, "md5sum")
	dir := t.TempDir()
	files := map[string]string{
		"a": "hello\n", `b\c`: "x", "n\nl": "y", "c\rr": "z", "sp ace": "s", "sub/x": "in sub", "-": "dash",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	const h = "b1946ac92492d2347c6235b4d2611184" // md5 of "hello\n" (md5sum a)
	// md5sum's own output for names it escapes.
	escaped := execIn(dir, "", exec.Command("md5sum", "--", `b\c`, "n\nl", "c\rr")).stdout
	if strings.Count(escaped, "\n") != 3 {
		t.Fatalf("md5sum: %q", escaped)
	}

	tests := []struct {
		name  string
		sums  map[string]string // checksum files to write
		args  []string          // after "-c"
		stdin string
	}{
		{"formats", map[string]string{"s": h + "  a\n" + h + " *a\n   " + h + "  a\n\t" + h + "  a\n" + strings.ToUpper(h) + "  a\nMD5 (a) = " + h + "\n  MD5 (a) = " + h + "\n"}, []string{"s"}, ""},
		{"one-space first", map[string]string{"s": h + " a\n" + h + "  a\n"}, []string{"s"}, ""},
		{"two-space first", map[string]string{"s": h + "  a\n" + h + " a\n"}, []string{"s"}, ""},
		{"missing and directory", map[string]string{"s": h + "  missing\n" + h + "  d\n" + h + "  a\n"}, []string{"s"}, ""},
		{"mismatches", map[string]string{"s": strings.Repeat("0", 32) + "  a\n" + strings.Repeat("1", 32) + "  sp ace\n"}, []string{"s"}, ""},
		{"no valid line", map[string]string{"s": "garbage\n"}, []string{"s"}, ""},
		{"empty file", map[string]string{"s": ""}, []string{"s"}, ""},
		{"escaped names", map[string]string{"s": escaped}, []string{"s"}, ""},
		{"bad escapes", map[string]string{"s": "\\" + h + "  a\\x\n\\" + h + "  a\\\n" + h + "  a\\\n\\" + h + "  a\n"}, []string{"s"}, ""},
		{"comments blanks CRLF", map[string]string{"s": "# c\n\n   \n  # not a comment\n" + h + "  a\r\n"}, []string{"s"}, ""},
		{"relative to the working directory", map[string]string{"sub/s": h + "  x\n" + h + "  sub/x\n"}, []string{"sub/s"}, ""},
		{"several files", map[string]string{"s1": h + "  a\n", "s2": h + "  gone\n"}, []string{"s1", "nofile", "d", "s2"}, ""},
		{"format kept across files", map[string]string{"s1": h + "  a\n", "s2": h + " a\n"}, []string{"s1", "s2"}, ""},
		{"bsd variants", map[string]string{"s": "MD5(a)= " + h + "\nMD5 (a) =" + h + "\nMD5 (a) = " + h + " extra\nmd5 (a) = " + h + "\nSHA256 (a) = " + strings.Repeat("ab", 32) + "\nMD5 (a (1)) = " + h + "\n" + h + "\n" + h + "  \n" + h + " *\n"}, []string{"s"}, ""},
		{"other algorithms", map[string]string{"s": strings.Repeat("ab", 32) + "  a\n" + strings.Repeat("ab", 20) + "  a\n" + h + "  a\n"}, []string{"s"}, ""},
		{"quoted names", map[string]string{"s": h + "  nope'x\n" + h + "  sp ace2\n" + h + "  a \n" + h + "  c\rrx\n"}, []string{"s"}, ""},
		{"stdin list", nil, nil, h + "  a\n" + h + "  gone\n"},
		{"stdin list by name", nil, []string{"-"}, h + "  a\n"},
		{"dash entry is stdin", map[string]string{"s": "b999a7c3bcc5535b4c8e277e18b7b6e1  -\n"}, []string{"s"}, "dash"},
		{"quiet", map[string]string{"s": h + "  a\n" + h + "  gone\n" + strings.Repeat("0", 32) + "  a\n"}, []string{"--quiet", "s"}, ""},
		{"status", map[string]string{"s": h + "  a\n" + h + "  gone\nbad\n"}, []string{"--status", "s"}, ""},
		{"warn", map[string]string{"s": "bad\n" + h + "  a\nworse\n"}, []string{"--warn", "s"}, ""},
		{"strict", map[string]string{"s": h + "  a\nbad\n"}, []string{"--strict", "s"}, ""},
		{"ignore missing", map[string]string{"s": h + "  gone\n" + h + "  a\n"}, []string{"--ignore-missing", "s"}, ""},
		{"ignore missing, none found", map[string]string{"s": h + "  gone\n"}, []string{"--ignore-missing", "s"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for name, body := range tc.sums {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ref := execIn(dir, tc.stdin, exec.Command("md5sum", append([]string{"-c"}, tc.args...)...))
			got := execIn(dir, tc.stdin, cpsimage(t, append([]string{"md5", "-c"}, tc.args...)...))
			ref.stderr = strings.ReplaceAll(ref.stderr, "md5sum: ", "cpsimage md5: ")
			if got != ref {
				t.Errorf("md5sum -c %q:\n  exit %d\n  stdout %q\n  stderr %q\ncpsimage md5 -c:\n  exit %d\n  stdout %q\n  stderr %q",
					tc.args, ref.code, ref.stdout, ref.stderr, got.code, got.stdout, got.stderr)
			}
		})
	}
}

// Plain md5 prints what md5sum prints, escapes included, and reports an
// unreadable file as md5sum does (exit 1, nothing more).
func TestMD5MatchesMD5sum(t *testing.T) {
	testutil.RequireTool(t, "md5sum")
	dir := t.TempDir()
	for name, body := range map[string]string{"a": "hello\n", `b\c`: "x", "n\nl": "y", "c\rr": "z"} {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	for _, args := range [][]string{{"a", `b\c`, "n\nl", "c\rr"}, {"a", "missing", "d"}, {"-"}, {}} {
		ref := execIn(dir, "from stdin", exec.Command("md5sum", args...))
		got := execIn(dir, "from stdin", cpsimage(t, append([]string{"md5"}, args...)...))
		ref.stderr = strings.ReplaceAll(ref.stderr, "md5sum: ", "cpsimage md5: ")
		if got != ref {
			t.Errorf("md5sum %q: %+v\ncpsimage md5: %+v", args, ref, got)
		}
	}
}

type procResult struct {
	code           int
	stdout, stderr string
}

func (r procResult) String() string { return fmt.Sprintf("exit %d %q %q", r.code, r.stdout, r.stderr) }

// execIn runs cmd in dir with stdin and the C locale (md5sum's messages
// are translated otherwise).
func execIn(dir, stdin string, cmd *exec.Cmd) procResult {
	var out, errb bytes.Buffer
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(append([]string{}, cmd.Environ()...), "LC_ALL=C")
	cmd.Run()
	return procResult{cmd.ProcessState.ExitCode(), out.String(), errb.String()}
}
