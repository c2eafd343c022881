package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/internal/cli"
	"github.com/conpaas/cps/internal/input"
)

func init() {
	commands.Add(&cli.Command{
		Name:    "catalogue",
		Summary: "list, show, add artifacts and record registrations in the image catalogue",
		Help: `usage: cpsimage catalogue SUBCOMMAND [-f FILE] [flags]

  list                    the artifacts: name, version, kind, arch, size, MD5, registrations
  show NAME [--version V] one artifact as JSON (the newest version by default)
  add FILE                add or update the artifact of an image file (checksums computed)
  set-registration NAME   record where an artifact is registered (AMI, Glance image)

-f FILE is the catalogue (default ` + catalogue.DefaultPath + `).
Run 'cpsimage catalogue SUBCOMMAND -h' for a subcommand's flags.
`,
		Run: runCatalogue,
	})
}

func runCatalogue(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return cli.Usagef("usage: cpsimage catalogue list|show NAME|add FILE|set-registration NAME [flags]")
	}
	sub, args := args[0], args[1:]
	fs := cli.NewFlagSet("cpsimage", "catalogue "+sub, "[flags]")
	path := fs.String("f", catalogue.DefaultPath, "the catalogue `FILE`")
	switch sub {
	case "list":
		if err := cli.Parse(fs, args); err != nil {
			return err
		}
		c, err := loadCatalogue(*path)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(cli.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tVERSION\tKIND\tARCH\tSIZE\tMD5\tREGISTERED")
		for _, a := range c.Artifacts {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%d\n", a.Name, a.Version, a.Kind, a.Arch, a.Size, a.MD5, len(a.Registered))
		}
		return w.Flush()
	case "show":
		version := fs.String("version", "", "the artifact's `VERSION` (default: the newest)")
		pos, err := parseAnyOrder(fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return cli.Usagef("catalogue show: name one artifact")
		}
		c, err := loadCatalogue(*path)
		if err != nil {
			return err
		}
		a := c.Find(pos[0])
		if *version != "" {
			a = c.FindVersion(pos[0], *version)
		}
		if a == nil {
			return cli.WithCode(cli.ExitFailure, fmt.Errorf("%s has no artifact %q %s", *path, pos[0], *version))
		}
		b, _ := json.MarshalIndent(a, "", "  ")
		fmt.Fprintf(cli.Stdout, "%s\n", b)
		return nil
	case "add":
		name := fs.String("name", "", "artifact name (default: the file name without extension)")
		version := fs.String("version", "", "ConPaaS version")
		kind := fs.String("kind", "raw", "raw, sdcard, ova or lxc")
		arch := fs.String("arch", "amd64", "Debian architecture")
		boot := fs.String("boot", "", "the `MODES` it boots from: bios, uefi or bios,uefi (default: read from the image's partition table)")
		pos, err := parseAnyOrder(fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return cli.Usagef("catalogue add: name one file")
		}
		file := pos[0]
		if *name == "" {
			*name = trimExt(filepath.Base(file))
		}
		switch *kind {
		case "raw", "sdcard", "ova", "lxc":
		default:
			return cli.Usagef("--kind %q: use raw, sdcard, ova or lxc", *kind)
		}
		// The catalogue names the file for later verification and
		// registration: a stream cannot be found again.
		if k, size, err := input.Stat(file); err != nil {
			return cli.WithCode(cli.ExitFailure, err)
		} else if k == input.Stream {
			return cli.Usagef("catalogue add: %s is a pipe or character device; the catalogue records files (or block devices) that can be read again: save it to a file first", file)
		} else if size == 0 {
			// An empty file is a failed build or download, never an image:
			// recorded, it would verify OK forever.
			return cli.WithCode(cli.ExitFailure, fmt.Errorf("catalogue add: %s is empty (0 bytes), not an image: build or download it again", file))
		}
		ar, err := parseArch(*arch)
		if err != nil {
			return cli.Usagef("%v", err)
		}
		// The file's format and boot modes are recorded so that register
		// needs nothing but the catalogue.
		facts, err := inspectFile(file)
		if err != nil {
			return cli.WithCode(cli.ExitFailure, err)
		}
		bootModes := facts.Boot
		if *boot != "" {
			if bootModes, err = parseBoot(*boot); err != nil {
				return cli.Usagef("%v", err)
			}
		}
		sums, err := hashFile(ctx, file, []checksum.Algo{checksum.MD5, checksum.SHA256})
		if err != nil {
			return cli.WithCode(cli.ExitFailure, err)
		}
		rel := file
		if abs, err := filepath.Abs(file); err == nil {
			catDir, _ := filepath.Abs(filepath.Dir(*path))
			if r, err := filepath.Rel(catDir, abs); err == nil && filepath.IsLocal(r) {
				rel = r
			} else {
				rel = abs
			}
		}
		a := catalogue.Artifact{Name: *name, Version: *version, Kind: catalogue.Kind(*kind), Format: facts.Format, Arch: ar, Boot: bootModes, File: rel,
			Size: sums.Size, MD5: sums.Get(checksum.MD5), SHA256: sums.Get(checksum.SHA256), Built: time.Now().UTC().Truncate(time.Second)}
		if err := catalogue.Update(*path, func(c *catalogue.Catalogue) error { c.Put(a); return nil }); err != nil {
			return err
		}
		fmt.Fprintf(cli.Stdout, "added %s %s (%s) to %s\n", a.Name, a.Version, a.MD5, *path)
		return nil
	case "set-registration":
		version := fs.String("version", "", "artifact version")
		cloud := fs.String("cloud", "", "ec2 or openstack")
		target := fs.String("target", "", "ec2-ebs, ec2-s3 or glance")
		region := fs.String("region", "", "EC2 region / OpenStack region")
		cloudName := fs.String("cloud-name", "", "clouds.yaml entry or AWS profile")
		imageID := fs.String("image-id", "", "AMI id or Glance image id")
		snapID := fs.String("snapshot-id", "", "EBS snapshot id")
		pos, err := parseAnyOrder(fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 1 || *cloud == "" || *target == "" || *imageID == "" {
			return cli.Usagef("catalogue set-registration NAME --cloud C --target T --image-id ID [--region R]")
		}
		r := catalogue.Registration{Cloud: catalogue.Cloud(*cloud), Target: *target, Region: *region, CloudName: *cloudName,
			ImageID: *imageID, SnapshotID: *snapID, Time: time.Now().UTC().Truncate(time.Second)}
		err = catalogue.Update(*path, func(c *catalogue.Catalogue) error {
			return c.SetRegistration(pos[0], *version, r)
		})
		if err != nil {
			return cli.WithCode(cli.ExitFailure, err)
		}
		fmt.Fprintf(cli.Stdout, "%s: %s %s %s -> %s\n", pos[0], *cloud, *target, *region, *imageID)
		return nil
	}
	return cli.Usagef("catalogue: unknown subcommand %q (list, show, add, set-registration)", sub)
}

func loadCatalogue(path string) (*catalogue.Catalogue, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, cli.WithCode(cli.ExitUsage, fmt.Errorf("no catalogue at %s; build an image first or pass -f FILE", path))
	}
	c, err := catalogue.Load(path)
	if err != nil {
		return nil, cli.WithCode(cli.ExitUsage, err)
	}
	return c, nil
}

func trimExt(name string) string {
	for _, ext := range []string{".img.tar.gz", ".tar.gz", ".img", ".ova", ".vmdk"} {
		if len(name) > len(ext) && name[len(name)-len(ext):] == ext {
			return name[:len(name)-len(ext)]
		}
	}
	return name
}

// parseAnyOrder parses fs's flags before and after the positional
// arguments, which it returns: the usage writes "show NAME [--version V]",
// and Go's flag package stopped at NAME, so "catalogue show n --version 1"
// and "catalogue add disk.img -f c.json" said "name one artifact/file".
// After "--" everything is positional.
func parseAnyOrder(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := cli.Parse(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}
