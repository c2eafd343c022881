package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/conpaas/cps/hcl/template"
	"github.com/conpaas/cps/internal/cli"
	"github.com/conpaas/cps/plan"
)

// templateFlags are the flags every template-reading command takes.
type templateFlags struct {
	vars     map[string]string
	varFiles []string
}

func addTemplateFlags(fs *flag.FlagSet) *templateFlags {
	tf := &templateFlags{vars: map[string]string{}}
	fs.Func("var", "set a template variable: -var NAME=VALUE (repeatable)", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("want NAME=VALUE, got %q", s)
		}
		tf.vars[k] = v
		return nil
	})
	fs.Func("var-file", "read template variables from an HCL file (repeatable)", func(s string) error {
		tf.varFiles = append(tf.varFiles, s)
		return nil
	})
	return tf
}

// load reads the template named by args (at most one), or the embedded
// default. Template errors exit with code 2, like usage errors.
func (tf *templateFlags) load(ctx context.Context, args []string) (*plan.Plan, error) {
	opt := template.Options{Context: ctx, Vars: tf.vars, VarFiles: tf.varFiles, Environ: os.Environ()}
	var (
		p   *plan.Plan
		err error
	)
	switch len(args) {
	case 0:
		name, src := template.Default()
		dir, _ := os.Getwd()
		p, err = template.LoadSource(name, src, dir, opt)
	case 1:
		p, err = template.Load(args[0], opt)
	default:
		return nil, cli.Usagef("want at most one TEMPLATE, got %d", len(args))
	}
	if err != nil {
		// A template that cannot be read (missing, a directory, a link
		// loop, too large) or is wrong is bad input: exit 2, as fmt's;
		// validate of a directory or a link loop exited 1, a missing file 2.
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, cli.WithCode(cli.ExitUsage, err)
	}
	return p, nil
}
