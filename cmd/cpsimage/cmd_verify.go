package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/images/verify"
	"github.com/conpaas/cps/internal/cli"
	"github.com/conpaas/cps/internal/input"
	"github.com/conpaas/cps/internal/progress"
)

func init() {
	commands.Add(&cli.Command{
		Name:    "verify",
		Summary: "check images against --md5, a checksum file, the catalogue or the published ConPaaS releases; --structure/--deep check inside",
		Run:     runVerify,
	})
}

func runVerify(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsimage", "verify", "[--md5 HEX | -c SUMFILE] [--catalogue FILE [--name N] [--version V]] [--structure] [--deep] [--json] FILE...")
	md5 := fs.String("md5", "", "the expected MD5 (`HEX`)")
	sumFile := fs.String("c", "", "take expected values from `SUMFILE` (md5sum/sha256sum format)")
	cat := fs.String("catalogue", "catalogue.json", "look files up in this catalogue `FILE`")
	name := fs.String("name", "", "in the catalogue, only the artifact of this `NAME`")
	version := fs.String("version", "", "in the catalogue, only the artifact of this `VERSION`")
	structure := fs.Bool("structure", false, "also check the partition table, filesystems, boot code (OVA: descriptor and manifest)")
	deep := fs.Bool("deep", false, "archives: stream through .tar.gz and check the image inside (implies --structure)")
	asJSON := fs.Bool("json", false, "print a JSON report")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return cli.Usagef("name at least one file")
	}
	if *md5 != "" && *sumFile != "" {
		// Each gives the expected checksum; -c used to win silently, so a
		// wrong --md5 beside a checksum file still said OK.
		return cli.Usagef("--md5 and -c both give the expected checksum: pass only one of them")
	}
	opt := verify.Options{MD5: *md5, Catalogue: *cat, Name: *name, Version: *version, Structure: *structure, Deep: *deep}
	// A checksum file's lines by path, and by file name for files named
	// from another directory (several lines may share a file name: then
	// the file must match one of them).
	fromFile := map[string]*verify.Expected{}
	byBase := map[string][]*verify.Expected{}
	conflict := map[string]string{} // path -> why its lines disagree
	if *sumFile != "" {
		f, err := input.Open(ctx, *sumFile)
		if err != nil {
			return err // unreadable: exit 1 (130 if interrupted)
		}
		entries, bad, err := verify.ParseSumFile(f)
		f.Close()
		if err != nil {
			return err
		}
		for _, b := range bad {
			fmt.Fprintf(cli.Stderr, "cpsimage: %s: %d: improperly formatted checksum line\n", *sumFile, b.Line)
		}
		for _, e := range entries {
			x := &verify.Expected{Algo: e.Algo, Hex: e.Hex, Source: fmt.Sprintf("%s line %d", *sumFile, e.Line)}
			key := filepath.Clean(e.File)
			if old, ok := fromFile[key]; ok {
				// One path on two lines of one algorithm that disagree: the
				// later line used to win, so "00..0  a" then a's real sum said
				// OK where md5sum -c says FAILED. Which line is right is not
				// ours to choose.
				if old.Algo == x.Algo && old.Hex != x.Hex || old.Algo != x.Algo && x.Algo == checksum.SHA256 && old.SHA256 != "" && old.SHA256 != x.Hex {
					conflict[key] = fmt.Sprintf("%s lists %s on %s and on line %d with different checksums: keep the one line that is right", *sumFile, e.File, old.Source[len(*sumFile)+1:], e.Line)
				}
				// Lines of two algorithms (an MD5 and a SHA-256 line, as a
				// BSD-style CHECKSUM file has) must both hold: the SHA-256
				// rides along as a catalogue entry's does; of two others the
				// longer digest is kept.
				switch {
				case old.Algo == x.Algo:
					continue
				case x.Algo == checksum.SHA256:
					old.SHA256 = x.Hex
					continue
				case old.Algo == checksum.SHA256:
					x.SHA256 = old.Hex
				case old.Algo.HexLen() > x.Algo.HexLen():
					continue
				}
			}
			fromFile[key] = x
			byBase[filepath.Base(e.File)] = append(byBase[filepath.Base(e.File)], x)
		}
	}
	var reports []*verify.Report
	worst := cli.ExitOK
	for _, path := range fs.Args() {
		var (
			exp  *verify.Expected
			kind string
			err  error
		)
		if c, ok := conflict[filepath.Clean(path)]; ok {
			err = errors.New(c)
		} else if e, ok := fromFile[filepath.Clean(path)]; ok {
			exp = e
		} else if bs := byBase[filepath.Base(path)]; len(bs) == 1 {
			exp = bs[0]
		} else if len(bs) > 1 {
			exp = &verify.Expected{Algo: bs[0].Algo, Source: *sumFile, Candidates: bs}
		} else if *sumFile != "" {
			err = fmt.Errorf("%s is not listed in %s", path, *sumFile)
		} else {
			exp, kind, _, err = verify.Lookup(path, opt)
		}
		if err != nil {
			fmt.Fprintf(cli.Stderr, "cpsimage verify: %v\n", err)
			worst = max(worst, cli.ExitUsage) // nothing to check against: say what to pass
			continue
		}
		_, size, err := input.Stat(path)
		if err != nil {
			fmt.Fprintf(cli.Stderr, "cpsimage verify: %v\n", err)
			worst = max(worst, cli.ExitFailure)
			continue
		}
		bar := progress.New(filepath.Base(path), max(size, 0))
		opt.Progress = bar
		rep, err := verify.File(ctx, path, exp, kind, opt)
		bar.Finish()
		if err != nil && ctx.Err() != nil {
			return err // interrupted: stop, exit 130
		}
		if err != nil {
			fmt.Fprintf(cli.Stderr, "cpsimage verify: %v\n", err)
			if errors.Is(err, input.ErrNotSeekable) {
				worst = max(worst, cli.ExitUsage) // a stream where a file is needed
			} else {
				worst = max(worst, cli.ExitFailure) // unreadable or corrupt
			}
			continue
		}
		reports = append(reports, rep)
		if !rep.OK {
			worst = max(worst, cli.ExitFailure)
		}
		if *asJSON {
			continue
		}
		if rep.OK {
			// rep.Expected: of several catalogue entries, the one the file is.
			if e := rep.Expected; e != nil {
				fmt.Fprintf(cli.Stdout, "%s: OK (%s %s, from %s)\n", path, e.Algo, rep.Sums[string(e.Algo)], e.Source)
			} else {
				fmt.Fprintf(cli.Stdout, "%s: OK\n", path)
			}
		} else {
			fmt.Fprintf(cli.Stdout, "%s: FAILED\n", path)
			if rep.Mismatch != "" {
				fmt.Fprintf(cli.Stdout, "  %s\n", rep.Mismatch)
			}
		}
		for _, c := range rep.Checked {
			fmt.Fprintf(cli.Stdout, "  checked: %s\n", c)
		}
		for _, p := range rep.Problems {
			fmt.Fprintf(cli.Stdout, "  %s\n", p)
		}
	}
	if *asJSON {
		b, _ := json.MarshalIndent(reports, "", "  ")
		fmt.Fprintf(cli.Stdout, "%s\n", b)
	}
	switch worst {
	case cli.ExitOK:
		return nil
	case cli.ExitFailure:
		return cli.WithCode(cli.ExitFailure, errors.New("verification failed"))
	default:
		return cli.WithCode(worst, errors.New("some files could not be verified"))
	}
}
