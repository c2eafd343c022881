package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/conpaas/cps/builders/sdcard"
	"github.com/conpaas/cps/internal/cli"
	"github.com/conpaas/cps/internal/progress"
	"github.com/conpaas/cps/internal/size"
)

func init() {
	commands.Add(&cli.Command{
		Name:    "sdcard",
		Summary: "Raspberry Pi SD-card images: resize IMAGE --size N (grow for a bigger card)",
		Help: `usage: cpsimage sdcard resize IMAGE --size N [--align 4MiB]

Grows an SD-card image for a bigger card, offline: the swap partition moves
to the end, the root partition and filesystem grow. Sizes: cpsimage help sizes.
`,
		Run: runSDCard,
	})
}

func runSDCard(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return cli.Usagef("missing subcommand; use: cpsimage sdcard resize IMAGE --size N")
	}
	switch args[0] {
	case "resize":
		return runSDCardResize(ctx, args[1:])
	}
	return cli.Usagef("unknown sdcard subcommand %q; use: cpsimage sdcard resize IMAGE --size N", args[0])
}

func runSDCardResize(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsimage", "sdcard resize", "IMAGE --size N [--align 4MiB]")
	sizeS := fs.String("size", "", "new image size: bytes, or with a unit (64GB = 64e9 bytes, 59.6GiB; see cpsimage help sizes); best the card's exact size (blockdev --getsize64 /dev/sdX)")
	alignS := fs.String("align", "4MiB", "boundary every partition starts on (the SD erase block)")
	// Accept IMAGE before or after the flags.
	var img string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		img, args = args[0], args[1:]
	}
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if img == "" && fs.NArg() == 1 {
		img = fs.Arg(0)
	} else if fs.NArg() != 0 || img == "" {
		fs.Usage()
		return cli.Usagef("want exactly one IMAGE")
	}
	if *sizeS == "" {
		return cli.Usagef("--size is required: the new size in bytes or with a unit, e.g. --size 64GB")
	}
	newSize, err := size.Parse(*sizeS)
	if err != nil {
		return cli.Usagef("--size: %v", err)
	}
	align, err := size.Parse(*alignS)
	if err != nil {
		return cli.Usagef("--align: %v", err)
	}
	res, err := sdcard.Resize(ctx, progress.Default(), img, newSize, align)
	if err != nil {
		if errors.Is(err, sdcard.ErrBadSize) {
			return cli.WithCode(cli.ExitUsage, err)
		}
		return err
	}
	if res.Already {
		fmt.Fprintf(cli.Stdout, "%s is already %d bytes (an earlier resize finished it); its checksum side files are up to date\n", img, res.NewSize)
		return nil
	}
	fmt.Fprintf(cli.Stdout, "resized %s from %d to %d bytes (%d bytes written)\n", img, res.OldSize, res.NewSize, res.Copied)
	for i, p := range res.Partitions {
		fmt.Fprintf(cli.Stdout, "  %d %-5s start %d end %d (%d bytes)\n", i+1, p.FS, p.Start, p.End, p.End-p.Start)
	}
	return nil
}
