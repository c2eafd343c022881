package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/images/verify"
	"github.com/conpaas/cps/internal/cli"
	"github.com/conpaas/cps/internal/input"
	"github.com/conpaas/cps/internal/progress"
)

func init() {
	commands.Add(&cli.Command{
		Name:    "md5",
		Summary: "print MD5s like md5sum (--all: MD5, SHA1, SHA256, SHA512 in one pass; -c: check a checksum file)",
		Run:     runMD5,
	})
}

func runMD5(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsimage", "md5", "[--all] FILE... | -c SUMFILE")
	all := fs.Bool("all", false, "print MD5, SHA1, SHA256 and SHA512 (BSD style lines), computed in one pass")
	check := fs.String("c", "", "read checksums from `SUMFILE` (md5sum/sha256sum format) and check them, like md5sum -c")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *check != "" {
		return checkSumFile(ctx, *check, fs.Args())
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return cli.Usagef("name at least one file")
	}
	algos := []checksum.Algo{checksum.MD5}
	if *all {
		algos = []checksum.Algo{checksum.MD5, checksum.SHA1, checksum.SHA256, checksum.SHA512}
	}
	failed := false
	for _, path := range fs.Args() {
		sums, err := hashFile(ctx, path, algos)
		if err != nil {
			if ctx.Err() != nil {
				return err // interrupted: stop, exit 130
			}
			fmt.Fprintf(cli.Stderr, "cpsimage md5: %v\n", err)
			failed = true
			continue
		}
		if !*all {
			fmt.Fprintf(cli.Stdout, "%s  %s\n", sums.Get(checksum.MD5), path)
			continue
		}
		for _, a := range algos {
			fmt.Fprintf(cli.Stdout, "%s (%s) = %s\n", upper(string(a)), path, sums.Get(a))
		}
	}
	if failed {
		return cli.WithCode(cli.ExitFailure, errors.New("some files could not be read"))
	}
	return nil
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
	}
	return string(b)
}

// hashFile hashes path (a file, a block device, or a stream read to EOF;
// "-" is standard input) with a progress bar (log lines off a terminal).
func hashFile(ctx context.Context, path string, algos []checksum.Algo) (checksum.Sums, error) {
	in, err := input.Open(ctx, path)
	if err != nil {
		return checksum.Sums{}, err
	}
	defer in.Close()
	bar := progress.New(filepath.Base(path), max(in.Size, 0))
	defer bar.Finish()
	return checksum.Input(ctx, in, checksum.Options{Algos: algos, Progress: bar})
}

// checkSumFile is md5sum -c: "FILE: OK" / "FILE: FAILED" per line, the
// same warnings, exit 1 if anything failed. Names resolve against the
// checksum file's directory, as md5sum does from there.
func checkSumFile(ctx context.Context, sumFile string, only []string) error {
	f, err := os.Open(sumFile)
	if err != nil {
		return cli.WithCode(cli.ExitUsage, err)
	}
	entries, bad, err := verify.ParseSumFile(f)
	f.Close()
	if err != nil {
		return cli.WithCode(cli.ExitUsage, err)
	}
	for _, b := range bad {
		fmt.Fprintf(cli.Stderr, "cpsimage: %s: %d: improperly formatted checksum line\n", sumFile, b.Line)
	}
	if len(entries) == 0 {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("%s: no properly formatted checksum lines found", sumFile))
	}
	want := map[string]bool{}
	for _, o := range only {
		want[o] = true
	}
	dir := filepath.Dir(sumFile)
	failed, unreadable := 0, 0
	for _, e := range entries {
		if len(want) > 0 && !want[e.File] {
			continue
		}
		path := e.File
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		sums, err := hashFile(ctx, path, []checksum.Algo{e.Algo})
		if err != nil {
			fmt.Fprintf(cli.Stdout, "%s: FAILED open or read\n", e.File)
			unreadable++
			continue
		}
		if sums.Get(e.Algo) == e.Hex {
			fmt.Fprintf(cli.Stdout, "%s: OK\n", e.File)
		} else {
			fmt.Fprintf(cli.Stdout, "%s: FAILED\n", e.File)
			failed++
		}
	}
	if len(bad) > 0 {
		fmt.Fprintf(cli.Stderr, "cpsimage: WARNING: %d line(s) improperly formatted\n", len(bad))
	}
	if unreadable > 0 {
		fmt.Fprintf(cli.Stderr, "cpsimage: WARNING: %d listed file(s) could not be read\n", unreadable)
	}
	if failed > 0 || unreadable > 0 {
		return cli.WithCode(cli.ExitFailure, fmt.Errorf("WARNING: %d computed checksum(s) did NOT match", failed))
	}
	return nil
}
