package main

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclwrite"

	"github.com/conpaas/cps/hcl/template"
	"github.com/conpaas/cps/internal/atomicfile"
	"github.com/conpaas/cps/internal/cli"
	"github.com/conpaas/cps/internal/input"
)

func init() {
	commands.Add(&cli.Command{
		Name:    "fmt",
		Summary: "rewrite templates in canonical HCL style (-check: only report)",
		Run:     runFmt,
	})
}

func runFmt(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsimage", "fmt", "[-check] FILE...")
	check := fs.Bool("check", false, "do not write; exit 1 if a file is not formatted")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return cli.Usagef("name at least one template file")
	}
	unformatted := 0
	for _, path := range fs.Args() {
		// fmt rewrites in place: a temporary file renamed over the path.
		// Over a FIFO or a device that would put a regular file in its
		// place (and "-" has no place), so those are only read with -check.
		if !*check {
			if err := rewritable(path); err != nil {
				return err
			}
		}
		src, err := input.ReadFile(ctx, path, template.MaxSourceSize)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			return cli.WithCode(cli.ExitUsage, err)
		}
		// Formatting a file that does not parse would garble it.
		p := hclparse.NewParser()
		if diags := template.CheckSource(path, src); diags.HasErrors() {
			return cli.WithCode(cli.ExitUsage, template.NewError(p, diags))
		}
		if _, diags := p.ParseHCL(src, path); diags.HasErrors() {
			return cli.WithCode(cli.ExitUsage, template.NewError(p, diags))
		}
		out := hclwrite.Format(src)
		if bytes.Equal(out, src) {
			continue
		}
		unformatted++
		fmt.Fprintln(cli.Stdout, path)
		if *check {
			continue
		}
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		// A symbolic link is written through (atomicfile follows it).
		if err := atomicfile.WriteFile(path, out, st.Mode().Perm()); err != nil {
			return err
		}
	}
	if *check && unformatted > 0 {
		return cli.WithCode(cli.ExitFailure, fmt.Errorf("%d file(s) not formatted; run cpsimage fmt on them", unformatted))
	}
	return nil
}

// rewritable refuses, with one sentence, a path fmt cannot rewrite in
// place: standard input, a FIFO, a device or socket (after symbolic links).
// A missing file or a directory is left to the read, which says so.
func rewritable(path string) error {
	if path == input.Stdin {
		return cli.Usagef("fmt rewrites files in place and cannot rewrite standard input: save it to a file and format that, or pass -check to only report")
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().IsRegular() || st.IsDir() {
		return nil
	}
	what := "a device"
	switch {
	case st.Mode()&os.ModeNamedPipe != 0:
		what = "a FIFO"
	case st.Mode()&os.ModeSocket != 0:
		what = "a socket"
	}
	return cli.Usagef("%s is %s, not a regular file, and fmt rewrites files in place: format a copy of it, or pass -check to only report", path, what)
}
