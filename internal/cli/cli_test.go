package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
)

func TestMainExitCodes(t *testing.T) {
	r := &Registry{Prog: "cpsimage"}
	r.Add(&Command{Name: "ok", Run: func(context.Context, []string) error { return nil }})
	r.Add(&Command{Name: "fail", Run: func(context.Context, []string) error { return errors.New("md5 mismatch") }})
	r.Add(&Command{Name: "usage", Summary: "parses flags", Run: func(_ context.Context, args []string) error {
		fs := NewFlagSet("cpsimage", "usage", "[-n N]")
		fs.Int("n", 1, "how many")
		return Parse(fs, args)
	}})
	r.Add(&Command{Name: "canceled", Run: func(context.Context, []string) error {
		return fmt.Errorf("upload: %w", context.Canceled)
	}})
	r.Add(&Command{Name: "canceled-bare", Run: func(context.Context, []string) error { return context.Canceled }})
	r.Add(&Command{Name: "diag", Run: func(context.Context, []string) error {
		return WithCode(ExitUsage, errors.New("Error: Unsupported argument\n\n  on t.hcl line 3"))
	}})
	r.Add(&Command{Name: "catalogue", Summary: "has subcommands", Help: "usage: cpsimage catalogue list|show NAME\n",
		Run: func(context.Context, []string) error { return Usagef("unknown subcommand") }})
	r.AddTopic(&Topic{Name: "sizes", Summary: "size units", Text: "\nSizes: GB is 10^9 bytes.\n"})
	tests := []struct {
		args           []string
		code           int
		stdout, stderr string // what each must contain ("" = must be empty)
	}{
		{nil, ExitUsage, "", "usage: cpsimage"},
		{[]string{"--help"}, ExitOK, "commands:", ""},
		{[]string{"-h"}, ExitOK, "help topics:\n  sizes", ""},
		{[]string{"help"}, ExitOK, "  usage        parses flags", ""},
		{[]string{"help", "sizes"}, ExitOK, "Sizes: GB is 10^9 bytes.", ""},
		{[]string{"help", "usage"}, ExitOK, "usage: cpsimage usage [-n N]\n  -n int", ""},
		{[]string{"usage", "--help"}, ExitOK, "usage: cpsimage usage [-n N]", ""},
		{[]string{"help", "catalogue"}, ExitOK, "usage: cpsimage catalogue list|show NAME", ""},
		{[]string{"catalogue", "-h"}, ExitOK, "usage: cpsimage catalogue list|show NAME", ""},
		{[]string{"help", "nope"}, ExitUsage, "", `no command or topic "nope"`},
		{[]string{"nope"}, ExitUsage, "", `unknown command "nope"`},
		{[]string{"ok"}, ExitOK, "", ""},
		{[]string{"fail"}, ExitFailure, "", "cpsimage fail: md5 mismatch"},
		{[]string{"usage", "--bogus"}, ExitUsage, "", "flag provided but not defined: -bogus\nusage: cpsimage usage [-n N]"},
		// Interrupted: exit 130 and words for "context canceled".
		{[]string{"canceled"}, ExitCanceled, "", "cpsimage canceled: upload: interrupted (Ctrl-C or SIGTERM)\n"},
		{[]string{"canceled-bare"}, ExitCanceled, "", "cpsimage canceled-bare: interrupted (Ctrl-C or SIGTERM)\n"},
		{[]string{"diag"}, ExitUsage, "", "Error: Unsupported argument"},
	}
	oldOut, oldErr := Stdout, Stderr
	defer func() { Stdout, Stderr = oldOut, oldErr }()
	for _, tc := range tests {
		var out, errb bytes.Buffer
		Stdout, Stderr = &out, &errb
		code := r.Main(context.Background(), tc.args, &errb)
		if code != tc.code {
			t.Errorf("%v: code %d, want %d (%s%s)", tc.args, code, tc.code, out.String(), errb.String())
		}
		for _, c := range []struct {
			name, got, want string
		}{{"stdout", out.String(), tc.stdout}, {"stderr", errb.String(), tc.stderr}} {
			if c.want == "" && c.got != "" || !strings.Contains(c.got, c.want) {
				t.Errorf("%v: %s %q, want %q", tc.args, c.name, c.got, c.want)
			}
		}
	}
}

// fullWriter is standard output on a full disk (/dev/full): every write fails.
type fullWriter struct{}

func (fullWriter) Write([]byte) (int, error) {
	return 0, errors.New("write /dev/stdout: no space left on device")
}

// TestMainWriteError: output that could not be written is a failure (exit
// 1 and one sentence), as md5sum's "write error"; before, `cpsimage md5 FILE
// >/dev/full` printed nothing and exited 0, so a script kept an empty list.
func TestMainWriteError(t *testing.T) {
	r := &Registry{Prog: "cpsimage"}
	r.Add(&Command{Name: "print", Run: func(context.Context, []string) error {
		fmt.Fprintln(Stdout, "d41d8cd98f00b204e9800998ecf8427e  empty")
		return nil
	}})
	r.Add(&Command{Name: "printfail", Run: func(context.Context, []string) error {
		fmt.Fprintln(Stdout, "a: FAILED")
		return Exit(ExitFailure)
	}})
	r.Add(&Command{Name: "quiet", Run: func(context.Context, []string) error { return nil }})
	tests := []struct {
		args   []string
		code   int
		stderr string // what it must contain ("" = must be empty)
	}{
		{[]string{"print"}, ExitFailure, "cpsimage: could not write the output (write /dev/stdout: no space left on device), so it is incomplete"},
		{[]string{"printfail"}, ExitFailure, "could not write the output"}, // keeps its own code
		{[]string{"help"}, ExitFailure, "could not write the output"},      // help is output too
		{[]string{"quiet"}, ExitOK, ""}, // nothing written: nothing lost
	}
	oldOut, oldErr := Stdout, Stderr
	defer func() { Stdout, Stderr = oldOut, oldErr }()
	for _, tc := range tests {
		var errb bytes.Buffer
		Stdout, Stderr = fullWriter{}, &errb
		code := r.Main(context.Background(), tc.args, &errb)
		if code != tc.code {
			t.Errorf("%v: code %d, want %d (%s)", tc.args, code, tc.code, errb.String())
		}
		if tc.stderr == "" && errb.Len() > 0 || !strings.Contains(errb.String(), tc.stderr) {
			t.Errorf("%v: stderr %q, want %q", tc.args, errb.String(), tc.stderr)
		}
		if strings.Count(errb.String(), "could not write") > 1 {
			t.Errorf("%v: the write error said more than once: %q", tc.args, errb.String())
		}
		if _, ok := Stdout.(fullWriter); !ok {
			t.Errorf("%v: Main left Stdout as %T, want it restored", tc.args, Stdout)
		}
	}
}

// Flags after positional arguments are parsed when they name a flag of
// the set; other dash-led arguments (a negative number, a legacy
// password) stay positional, as does everything after "--".
func TestParseKnownAnywhere(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		pos     string
		config  string
		verbose bool
	}{
		{[]string{"alice"}, "alice", "", false},
		{[]string{"--config", "c", "alice", "-5"}, "alice -5", "c", false},
		{[]string{"alice", "-5", "--config", "c"}, "alice -5", "c", false},
		{[]string{"alice", "--config=c", "-v"}, "alice", "c", true},
		{[]string{"alice", "-secret", "-v"}, "alice -secret", "", true},
		{[]string{"alice", "--", "-v", "--config", "c"}, "alice -v --config c", "", false},
		{[]string{"--", "-v"}, "-v", "", false},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		config := fs.String("config", "", "")
		verbose := fs.Bool("v", false, "")
		pos, err := ParseKnownAnywhere(fs, tc.args)
		if err != nil || strings.Join(pos, " ") != tc.pos || *config != tc.config || *verbose != tc.verbose {
			t.Errorf("%q: positional %q, config %q, v %v, err %v; want %q, %q, %v", tc.args, pos, *config, *verbose, err, tc.pos, tc.config, tc.verbose)
		}
	}
	// A known flag after the positionals that lacks its value is an error.
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.String("config", "", "")
	if _, err := ParseKnownAnywhere(fs, []string{"alice", "--config"}); err == nil {
		t.Error("--config without a value was accepted")
	}
}
