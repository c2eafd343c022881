package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/internal/cli"
	"github.com/conpaas/cps/internal/progress"
	"github.com/conpaas/cps/plan"
)

func init() {
	commands.Add(&cli.Command{
		Name:    "build",
		Summary: "build the images of a template (default: the embedded conpaas.img template)",
		Run:     runBuild,
	})
}

func runBuild(ctx context.Context, args []string) error { return build(ctx, args, builders.Get) }

// build is `cpsimage build` with the builder of each kind found by
// builderFor (builders.Get; a test records what builders receive).
func build(ctx context.Context, args []string, builderFor func(kind string) (builders.Builder, error)) error {
	fs := cli.NewFlagSet("cpsimage", "build", "[-o DIR] [-only NAME] [-force] [-var NAME=VALUE]... [TEMPLATE]")
	outDir := fs.String("o", "", "write the images into `DIR` instead of where the template says")
	only := fs.String("only", "", "build only the image `NAME` (and what it is made from)")
	force := fs.Bool("force", false, "replace images that already exist")
	catPath := fs.String("catalogue", "", "record the images in this catalogue `FILE` (default: catalogue.json next to the first image)")
	keep := fs.Bool("keep-work", false, "keep the temporary work directory (for debugging)")
	epochFlag := fs.Int64("source-date-epoch", 0, "pin every timestamp to this Unix time for a reproducible image (default: $SOURCE_DATE_EPOCH)")
	tf := addTemplateFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	p, err := tf.load(ctx, fs.Args())
	if err != nil {
		return err
	}
	epoch := *epochFlag
	if epoch == 0 {
		if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
			if epoch, err = strconv.ParseInt(s, 10, 64); err != nil || epoch <= 0 {
				return cli.Usagef("SOURCE_DATE_EPOCH=%q is not a positive Unix time", s)
			}
		}
	}
	order, err := buildOrder(p, *only)
	if err != nil {
		return err
	}
	// Refuse before any work what would be overwritten.
	for _, img := range order {
		out := img.OutputPath(*outDir)
		if _, err := os.Stat(out); err == nil && !*force {
			return cli.WithCode(cli.ExitUsage, fmt.Errorf("%s already exists; remove it or pass -force to replace it", out))
		}
	}
	if *catPath == "" && len(order) > 0 {
		*catPath = filepath.Join(filepath.Dir(order[0].OutputPath(*outDir)), catalogue.DefaultPath)
	}

	opt := buildOptions(*outDir, epoch, *keep, os.Getenv)
	// The catalogue entries of the images built, for images that copy
	// them in.
	entries, err := os.MkdirTemp("", "cps-entries-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(entries)
	for _, img := range order {
		b, err := builderFor(img.Kind)
		if err != nil {
			return cli.WithCode(cli.ExitUsage, err)
		}
		// The side files asked for; the builder also computes MD5 and
		// SHA256 for the catalogue (builders.HashAlgos).
		want, err := checksum.ParseAlgos(img.Checksums)
		if err != nil {
			return cli.WithCode(cli.ExitUsage, err)
		}
		start := time.Now()
		progress.Logf("build: image %q (%s) -> %s", img.Name, img.Kind, img.OutputPath(*outDir))
		res, err := b.Build(ctx, p, img, opt)
		if err != nil {
			if ctx.Err() != nil {
				return cli.WithCode(cli.ExitCanceled, fmt.Errorf("build of %q canceled", img.Name))
			}
			return fmt.Errorf("build of image %q failed: %w", img.Name, err)
		}
		opt.Built[img.Name] = res
		if err := checksum.WriteSideFiles(res.Path, res.Sums, want...); err != nil {
			return err
		}
		if err := record(*catPath, p, img, res); err != nil {
			return err
		}
		if res.Entry, err = writeEntry(entries, p, img, res, epoch); err != nil {
			return err
		}
		fmt.Fprintf(cli.Stdout, "%s  %s  (%s, %d bytes, %d bytes of data, built in %s)\n",
			res.Sums.Get(checksum.MD5), res.Path, img.Kind, sizeOf(res.Path), res.DataBytes, time.Since(start).Round(time.Second))
	}
	return nil
}

// buildOptions are the options every builder gets. Only cpsimage reads the
// environment: the cache directory is $CPS_CACHE (default /var/cache/cps),
// the same for every kind of image.
func buildOptions(outDir string, epoch int64, keep bool, getenv func(string) string) builders.Options {
	return builders.Options{
		OutputDir: outDir, CacheDir: cmp.Or(getenv("CPS_CACHE"), "/var/cache/cps"), NoTreeCache: getenv("CPS_NO_TREE_CACHE") != "",
		SourceDateEpoch: epoch, KeepWorkDir: keep, Built: map[string]*builders.Result{}, UI: progress.Default(),
	}
}

// buildOrder is the images to build, each after the images it is made
// from (an ova's source, the images its file provisioners copy in).
func buildOrder(p *plan.Plan, only string) ([]*plan.Image, error) {
	var order []*plan.Image
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string) error
	visit = func(name string) error {
		img := p.Image(name)
		if img == nil {
			return cli.Usagef("the template has no image %q", name)
		}
		switch state[name] {
		case 1:
			return cli.Usagef("image %q is made from itself (source cycle)", name)
		case 2:
			return nil
		}
		state[name] = 1
		for _, in := range builders.Inputs(p, img) {
			if err := visit(in); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, img)
		return nil
	}
	if only != "" {
		return order, visit(only)
	}
	for _, img := range p.Images {
		if err := visit(img.Name); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func sizeOf(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return st.Size()
}

// record puts the artifact in the catalogue; its file is named relative to
// the catalogue when it lies beside or below it.
func record(catPath string, p *plan.Plan, img *plan.Image, res *builders.Result) error {
	file := res.Path
	if abs, err := filepath.Abs(res.Path); err == nil {
		catDir, _ := filepath.Abs(filepath.Dir(catPath))
		if rel, err := filepath.Rel(catDir, abs); err == nil && filepath.IsLocal(rel) {
			file = rel
		} else {
			file = abs
		}
	}
	a := artifactOf(p, img, res)
	a.File = file
	err := catalogue.Update(catPath, func(c *catalogue.Catalogue) error {
		// A rebuild replaces the entry; registrations stay only if the
		// bytes are the same (a reproducible rebuild).
		c.Put(a)
		return nil
	})
	if err != nil {
		return fmt.Errorf("record %s in the catalogue %s: %w", img.Name, catPath, err)
	}
	return nil
}

// artifactOf is the catalogue entry of img built as res.
func artifactOf(p *plan.Plan, img *plan.Image, res *builders.Result) catalogue.Artifact {
	// built is when the image was made, even when SOURCE_DATE_EPOCH pins
	// every timestamp inside it: the catalogue is metadata about the
	// bytes, and the bytes stay reproducible.
	built := time.Now().UTC().Truncate(time.Second)
	return catalogue.Artifact{
		Name: img.Name, Version: img.Version, Kind: catalogue.Kind(img.Kind), Format: catalogue.Kind(img.Kind).BuiltFormat(),
		Arch: catalogue.Arch(img.Arch), Boot: catalogue.NewBootModes(img.Bootloader.BIOS, img.Bootloader.UEFI), File: res.Path,
		Size: sizeOf(res.Path), MD5: res.Sums.Get(checksum.MD5), SHA256: res.Sums.Get(checksum.SHA256),
		InputsDigest: p.InputsDigest, Built: built,
	}
}

// writeEntry writes a catalogue holding img's entry alone into dir, for an
// image of this run that copies img in (the Nutshell registers its
// services image from it). File is the artifact's file name; the build
// time is SOURCE_DATE_EPOCH when set, so that the image carrying the entry
// stays reproducible.
func writeEntry(dir string, p *plan.Plan, img *plan.Image, res *builders.Result, epoch int64) (string, error) {
	a := artifactOf(p, img, res)
	a.File = filepath.Base(res.Path)
	if epoch != 0 {
		a.Built = time.Unix(epoch, 0).UTC()
	}
	f := filepath.Join(dir, img.Name+".catalogue.json")
	err := catalogue.Update(f, func(c *catalogue.Catalogue) error {
		c.Put(a)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("catalogue entry of %s: %w", img.Name, err)
	}
	return f, nil
}
