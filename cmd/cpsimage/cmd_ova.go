package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/conpaas/cps/images/verify"
	"github.com/conpaas/cps/images/vmdk"
	"github.com/conpaas/cps/internal/atomicfile"
	"github.com/conpaas/cps/internal/cli"
	"github.com/conpaas/cps/internal/input"
	"github.com/conpaas/cps/internal/progress"
)

func init() {
	commands.Add(&cli.Command{
		Name:    "ova",
		Summary: "ova inspect FILE.ova: the appliance's hardware, members and manifest check",
		Help: `usage: cpsimage ova inspect [-json] FILE.ova

Prints the appliance's virtual hardware, its members and whether the
manifest's digests match them; -json for JSON.
`,
		Run: runOVA,
	})
	commands.Add(&cli.Command{
		Name:    "convert",
		Summary: "convert a raw image: --to vmdk (streamOptimized, sparse-aware)",
		Run:     runConvert,
	})
}

func runOVA(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "inspect" {
		return cli.Usagef("usage: cpsimage ova inspect [-json] FILE.ova")
	}
	fs := cli.NewFlagSet("cpsimage", "ova inspect", "[-json] FILE.ova")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := cli.Parse(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return cli.Usagef("name one .ova file")
	}
	path := fs.Arg(0)
	if k, _, err := input.Stat(path); err != nil {
		return err
	} else if k == input.Stream {
		return cli.Usagef("%s is a pipe or character device; ova inspect reads the appliance twice: save it to a file first", path)
	}
	info, err := verify.InspectOVA(path)
	if err != nil {
		return err // missing, unreadable or not an appliance: exit 1
	}
	problems, err := verify.OVA(path)
	if err != nil {
		return err
	}
	if *asJSON {
		b, _ := json.MarshalIndent(struct {
			*verify.OVAInfo
			Problems []string `json:"problems"`
		}{info, problems}, "", "  ")
		fmt.Fprintf(cli.Stdout, "%s\n", b)
	} else {
		fmt.Fprintf(cli.Stdout, "%s: %s, %d CPUs, %d MiB, disks %v bytes, NICs %s\nmembers: %s\n",
			path, info.OSType, info.CPUs, info.MemoryMiB, info.Disks, strings.Join(info.NICs, ", "), strings.Join(info.Members, ", "))
		if len(problems) == 0 {
			fmt.Fprintln(cli.Stdout, "manifest: OK")
		}
		for _, p := range problems {
			fmt.Fprintf(cli.Stdout, "problem: %s\n", p)
		}
	}
	if len(problems) > 0 {
		return cli.WithCode(cli.ExitFailure, errors.New("the OVA failed its checks"))
	}
	return nil
}

func runConvert(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsimage", "convert", "--to vmdk [-o OUT] IMAGE")
	to := fs.String("to", "vmdk", "output format: vmdk (streamOptimized)")
	out := fs.String("o", "", "output `FILE` (default: IMAGE with the new extension)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return cli.Usagef("name one raw image")
	}
	if *to != "vmdk" {
		return cli.Usagef("--to %q: only vmdk is supported (use qemu-img for qcow2/vhd)", *to)
	}
	src := fs.Arg(0)
	if *out == "" {
		*out = strings.TrimSuffix(src, filepath.Ext(src)) + ".vmdk"
	}
	in, err := input.Open(ctx, src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := in.RequireSeekable("convert"); err != nil {
		return cli.WithCode(cli.ExitUsage, err)
	}
	// The output is renamed over its path at the end: when that path is
	// the input (the same name, a link to it, or the default name of an
	// input that already ends in .vmdk) the source would be replaced.
	if err := notOnto(*out, in.File); err != nil {
		return err
	}
	f, err := atomicfile.Create(*out, 0o644)
	if err != nil {
		return err
	}
	defer f.Abort()
	bar := progress.New(filepath.Base(src), in.Size)
	stats, err := vmdk.Write(ctx, f, in.File, vmdk.Options{Progress: bar})
	bar.Finish()
	if errors.Is(err, vmdk.ErrNotDisk) || errors.Is(err, input.ErrNotSeekable) {
		return cli.WithCode(cli.ExitUsage, err)
	}
	if err != nil {
		return err // I/O: exit 1
	}
	if err := f.Commit(); err != nil {
		return err
	}
	fmt.Fprintf(cli.Stdout, "%s: streamOptimized VMDK, %d bytes (%d data grains of a %d-byte disk)\n", *out, stats.Written, stats.DataGrains, stats.Capacity)
	return nil
}

// notOnto refuses an output path that names the input file.
func notOnto(out string, in *os.File) error {
	ost, err := os.Stat(out)
	if err != nil {
		return nil // nothing there yet (or nothing we can see): no clash
	}
	ist, err := in.Stat()
	if err != nil {
		return err
	}
	if os.SameFile(ost, ist) {
		return cli.Usagef("refusing to write the output %s onto the input %s (the same file); name another output with -o", out, in.Name())
	}
	return nil
}
