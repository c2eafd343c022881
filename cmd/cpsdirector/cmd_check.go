package main

import (
	"context"
	"fmt"

	"github.com/conpaas/cps/clouds/compute"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/check"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
	"github.com/conpaas/cps/internal/cli"
)

func init() {
	commands.Add(&cli.Command{Name: "check", Summary: "diagnose the installation: certificates, clock, clouds, images, ports, database (cpscheck.py)", Run: runCheck})
}

func runCheck(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsdirector", "check", "[--config FILE] [--fix-security-groups]")
	cfgPath := configFlag(fs)
	fix := fs.Bool("fix-security-groups", false, "create missing security groups and open the ConPaaS ports")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	findings := check.Run(ctx, cfg, check.Options{
		FixSecurityGroups: *fix,
		OpenCloud:         func(cl config.Cloud) (compute.Cloud, error) { return compute.Open(computeConfig(cl)) },
	})
	problems := 0
	for _, f := range findings {
		fmt.Fprintln(cli.Stdout, f)
		if !f.OK {
			problems++
		}
	}
	if problems > 0 {
		return cli.WithCode(cli.ExitFailure, fmt.Errorf("%d problem(s) found", problems))
	}
	fmt.Fprintln(cli.Stdout, "no problems found")
	return nil
}
