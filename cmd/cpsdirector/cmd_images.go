package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/imagesel"
	"github.com/conpaas/cps/internal/cli"
)

func init() {
	commands.Add(&cli.Command{Name: "images", Summary: "list the image each configured cloud will start", Run: runImages})
}

func runImages(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsdirector", "images", "[--config FILE] [--json]")
	cfgPath := configFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	_, list, rerr := resolveImages(cfg)
	if *asJSON {
		if list == nil {
			list = []imagesel.Choice{} // a JSON list even when no cloud resolved
		}
		b, _ := json.MarshalIndent(list, "", "  ")
		fmt.Fprintln(cli.Stdout, string(b))
		return rerr
	}
	if len(cfg.Clouds) == 0 {
		fmt.Fprintf(cli.Stderr, "no cloud is configured in %s: set DRIVER in [iaas] (see director.cfg.example)\n", cfg.Path)
	}
	if len(list) == 0 {
		return rerr
	}
	tw := tabwriter.NewWriter(cli.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLOUD\tDRIVER\tREGION\tARCH\tIMAGE\tSOURCE\tVERSION")
	for _, c := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Cloud, c.Driver, dash(c.Region), c.Arch, c.ImageID, c.Source, dash(c.Version))
	}
	tw.Flush()
	return rerr
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
