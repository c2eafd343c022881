package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestMainExitCodes(t *testing.T) {
	r := &Registry{Prog: "cpsimage"}
	r.Add(&Command{Name: "ok", Run: func(context.Context, []string) error { return nil }})
	r.Add(&Command{Name: "fail", Run: func(context.Context, []string) error { return errors.New("md5 mismatch") }})
	r.Add(&Command{Name: "usage", Run: func(_ context.Context, args []string) error {
		fs := NewFlagSet("cpsimage", "usage", "")
		fs.SetOutput(&bytes.Buffer{})
		return Parse(fs, args)
	}})
	r.Add(&Command{Name: "canceled", Run: func(context.Context, []string) error {
		return fmt.Errorf("upload: %w", context.Canceled)
	}})
	r.Add(&Command{Name: "diag", Run: func(context.Context, []string) error {
		return WithCode(ExitUsage, errors.New("Error: Unsupported argument\n\n  on t.hcl line 3"))
	}})
	tests := []struct {
		args     []string
		code     int
		contains string
	}{
		{nil, ExitUsage, "usage: cpsimage"},
		{[]string{"--help"}, ExitOK, "commands:"},
		{[]string{"nope"}, ExitUsage, `unknown command "nope"`},
		{[]string{"ok"}, ExitOK, ""},
		{[]string{"fail"}, ExitFailure, "cpsimage fail: md5 mismatch"},
		{[]string{"usage", "--bogus"}, ExitUsage, "flag provided but not defined"},
		{[]string{"usage", "-h"}, ExitOK, ""},
		{[]string{"canceled"}, ExitCanceled, "canceled"},
		{[]string{"diag"}, ExitUsage, "Error: Unsupported argument"},
	}
	for _, tc := range tests {
		var buf bytes.Buffer
		code := r.Main(context.Background(), tc.args, &buf)
		if code != tc.code {
			t.Errorf("%v: code %d, want %d (%s)", tc.args, code, tc.code, buf.String())
		}
		if !strings.Contains(buf.String(), tc.contains) {
			t.Errorf("%v: output %q lacks %q", tc.args, buf.String(), tc.contains)
		}
	}
}
