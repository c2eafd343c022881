package main

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"

	"github.com/conpaas/cps/internal/atomicfile"
	"github.com/conpaas/cps/internal/cli"
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
		src, err := os.ReadFile(path)
		if err != nil {
			return cli.WithCode(cli.ExitUsage, err)
		}
		// Formatting a file that does not parse would garble it.
		if _, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos); diags.HasErrors() {
			return cli.WithCode(cli.ExitUsage, fmt.Errorf("%s", diags.Error()))
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
		if err := atomicfile.WriteFile(path, out, st.Mode().Perm()); err != nil {
			return err
		}
	}
	if *check && unformatted > 0 {
		return cli.WithCode(cli.ExitFailure, fmt.Errorf("%d file(s) not formatted; run cpsimage fmt on them", unformatted))
	}
	return nil
}
