package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/conpaas/cps/builders/sdcard"
	"github.com/conpaas/cps/internal/cli"
)

func init() {
	commands.Add(&cli.Command{
		Name:    "sdcard",
		Summary: "Raspberry Pi SD-card images: resize IMAGE --size N (grow for a bigger card)",
		Run:     runSDCard,
	})
}

func runSDCard(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(cli.Stdout, "usage: cpsimage sdcard resize IMAGE --size N [--align 4MiB]")
		if len(args) == 0 {
			return cli.Usagef("missing subcommand; use: cpsimage sdcard resize IMAGE --size N")
		}
		return nil
	}
	switch args[0] {
	case "resize":
		return runSDCardResize(ctx, args[1:])
	}
	return cli.Usagef("unknown sdcard subcommand %q; use: cpsimage sdcard resize IMAGE --size N", args[0])
}

func runSDCardResize(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsimage", "sdcard resize", "IMAGE --size N [--align 4MiB]")
	sizeS := fs.String("size", "", "new image size: bytes, or with a unit (64GB = 64e9, 59.6GiB, 61035MiB); use the card's exact size (blockdev --getsize64 /dev/sdX)")
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
	size, err := parseSize(*sizeS)
	if err != nil {
		return cli.Usagef("--size: %v", err)
	}
	align, err := parseSize(*alignS)
	if err != nil {
		return cli.Usagef("--align: %v", err)
	}
	res, err := sdcard.Resize(ctx, img, size, align)
	if err != nil {
		if errors.Is(err, sdcard.ErrBadSize) {
			return cli.WithCode(cli.ExitUsage, err)
		}
		return err
	}
	fmt.Fprintf(cli.Stdout, "resized %s from %d to %d bytes (%d bytes written)\n", img, res.OldSize, res.NewSize, res.Copied)
	for i, p := range res.Partitions {
		fmt.Fprintf(cli.Stdout, "  %d %-5s start %d end %d (%d bytes)\n", i+1, p.FS, p.Start, p.End, p.End-p.Start)
	}
	return nil
}

// parseSize reads "31998345216", "64GB" (decimal, as cards are sold),
// "4MiB"/"4M" (binary) or "59.6GiB".
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	}[strings.ToLower(unit)]
	if mult == 0 {
		return 0, fmt.Errorf("%q: unknown unit %q; use bytes or B, KiB, MiB, GiB, TiB, kB, MB, GB, TB", s, unit)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 || math.IsInf(v*mult, 0) || v*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is not a positive size", s)
	}
	return int64(math.Round(v * mult)), nil
}
