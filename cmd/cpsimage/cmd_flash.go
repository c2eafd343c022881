package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/conpaas/cps/images/flash"
	"github.com/conpaas/cps/internal/cli"
)

func init() {
	commands.Add(&cli.Command{
		Name:    "flash",
		Summary: "write an image to an SD card (or file): data ranges only, then verify",
		Run:     runFlash,
	})
}

func runFlash(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsimage", "flash", "[--discard] [--no-verify] IMAGE DEVICE")
	discard := fs.Bool("discard", false, "discard (TRIM) the image's holes on the device so they read as zeros instead of old data")
	noVerify := fs.Bool("no-verify", false, "do not read the written ranges back to compare checksums")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return cli.Usagef("want IMAGE and DEVICE, got %d arguments", fs.NArg())
	}
	res, err := flash.Flash(ctx, fs.Arg(0), fs.Arg(1), flash.Options{Discard: *discard, NoVerify: *noVerify})
	if err != nil {
		if errors.Is(err, flash.ErrTooSmall) || errors.Is(err, flash.ErrRefused) || errors.Is(err, flash.ErrBadTarget) || errors.Is(err, flash.ErrBadImage) {
			return cli.WithCode(cli.ExitUsage, err)
		}
		return err
	}
	fmt.Fprintf(cli.Stdout, "flashed %s to %s: %d bytes in %d ranges written, %d discarded, %d verified (image %d bytes, target %d bytes)\n",
		fs.Arg(0), fs.Arg(1), res.Written, res.Ranges, res.Discarded, res.Verified, res.ImageSize, res.Capacity)
	return nil
}
