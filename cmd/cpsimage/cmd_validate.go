package main

import (
	"context"
	"fmt"

	"github.com/conpaas/cps/internal/cli"
)

func init() {
	commands.Add(&cli.Command{
		Name:    "validate",
		Summary: "check a template (default: the embedded one); errors name file:line:col",
		Run:     runValidate,
	})
}

func runValidate(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsimage", "validate", "[-var NAME=VALUE]... [-var-file FILE]... [TEMPLATE]")
	tf := addTemplateFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	p, err := tf.load(ctx, fs.Args())
	if err != nil {
		return err
	}
	fmt.Fprintf(cli.Stdout, "%s: valid (%d images, %d registrations)\n", p.TemplatePath, len(p.Images), len(p.Registers))
	return nil
}
