package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/internal/cli"
	"github.com/conpaas/cps/plan"
)

func init() {
	commands.Add(&cli.Command{
		Name:    "inspect",
		Summary: "print the resolved build plan of a template (-json for all of it)",
		Run:     runInspect,
	})
}

func runInspect(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsimage", "inspect", "[-json] [-var NAME=VALUE]... [TEMPLATE]")
	asJSON := fs.Bool("json", false, "print the whole plan as JSON")
	tf := addTemplateFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	p, err := tf.load(ctx, fs.Args())
	if err != nil {
		return err
	}
	if *asJSON {
		b, err := json.MarshalIndent(p, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(cli.Stdout, "%s\n", b)
		return nil
	}
	fmt.Fprint(cli.Stdout, summary(p))
	return nil
}

// summary is the plan in a few readable lines per image.
func summary(p *plan.Plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "template: %s\ninputs digest: %s\n", p.TemplatePath, p.InputsDigest)
	for _, img := range p.Images {
		fmt.Fprintf(&b, "\nimage %q (%s, %s, version %q)\n  output: %s\n", img.Name, img.Kind, img.Arch, img.Version, img.Output)
		spec, err := builders.Lookup(img.Kind)
		if err != nil {
			spec = &builders.Spec{}
		}
		if !spec.FromSource {
			if spec.Bare {
				fmt.Fprintf(&b, "  size: %d bytes, one ext4 filesystem (no partition table, no bootloader)\n", img.Size)
			} else {
				fmt.Fprintf(&b, "  size: %d bytes, %s table, partitions aligned to %d bytes\n", img.Size, img.PartitionTable, img.Alignment)
			}
			d := img.Distribution
			fmt.Fprintf(&b, "  distribution: %s %s (%s, %s), %d extra packages\n", d.Suite, d.Mirror, strings.Join(d.Components, ","), d.Variant, len(d.Packages))
			for _, pt := range img.Partitions {
				size := "fill"
				if pt.Size > 0 {
					size = fmt.Sprintf("%d", pt.Size)
				}
				fmt.Fprintf(&b, "  partition %-8s %-9s %-10s %s\n", pt.Name, pt.FS, size, pt.Mount)
			}
			if bl := img.Bootloader; !spec.Bare {
				fmt.Fprintf(&b, "  bootloader: %s bios=%v uefi=%v cmdline=%q\n", bl.Type, bl.BIOS, bl.UEFI, bl.Cmdline)
			}
			fmt.Fprintf(&b, "  provisioners: %d\n", len(img.Provisioners))
		} else {
			fmt.Fprintf(&b, "  source: %s\n", img.Source)
			if vm := img.VM; vm != nil {
				fmt.Fprintf(&b, "  vm: %s, %s, %d CPUs, %d MiB, %s, %d NICs\n", vm.Name, vm.OSType, vm.CPUs, vm.MemoryMiB, vm.DiskController, len(vm.NICs))
			}
		}
		fmt.Fprintf(&b, "  checksums: %s\n", strings.Join(img.Checksums, ", "))
	}
	for _, r := range p.Registers {
		fmt.Fprintf(&b, "\nregister %q: %s of image %q region %q\n", r.Name, r.Target, r.Image, r.Region)
	}
	return b.String()
}
