// Package register is the common frame of `cpsimage register`: a target
// (ec2-ebs, ec2-s3, glance) turns a built artifact into an image its cloud
// can start, and the frame records the result in the catalogue. Targets add
// themselves with Add from their own packages.
package register

import (
	"context"
	"fmt"
	"sort"

	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/plan"
)

// Artifact is what is being registered: everything a target needs to know
// about it comes from the catalogue (or, for a file given with -image, from
// the flags and the file itself), never from a template.
type Artifact struct {
	Path    string // the image file
	Name    string // catalogue name
	Version string
	Kind    catalogue.Kind   // what was built
	Format  catalogue.Format // how the file is laid out ("" is raw)
	Arch    catalogue.Arch
	// Boot says which firmware interfaces the image boots from; when it
	// is empty, BootUnknown says why (for the error of a target that
	// needs it).
	Boot        catalogue.BootModes
	BootUnknown string
	// Sums are the artifact's digests (from the catalogue or computed).
	Sums checksum.Sums
}

// FileFormat is the file's format, FormatRaw when not recorded.
func (a Artifact) FileFormat() catalogue.Format {
	if a.Format == "" {
		return catalogue.FormatRaw
	}
	return a.Format
}

// Options common to every target.
type Options struct {
	// KeepOnError leaves partially created cloud objects in place for debugging.
	KeepOnError bool
	// Replace lets a new registration take the name of an existing image,
	// which is deregistered (EC2) or deleted once the new one is active
	// (Glance). ForceNewName registers under a new name instead (the run's
	// time appended). Without either, an existing image of the name is an
	// error found before anything is uploaded.
	Replace, ForceNewName bool
}

// Target registers artifacts on one kind of cloud.
type Target interface {
	// Register uploads and registers art as described by reg and returns one
	// registration per region/cloud the image can now be started in. On
	// error (or ctx cancellation) it deletes what it created unless
	// opt.KeepOnError.
	Register(ctx context.Context, reg plan.Register, art Artifact, opt Options) ([]catalogue.Registration, error)
}

var targets = map[string]Target{}

// Add makes a target available under name (plan.TargetEC2EBS, ...).
func Add(name string, t Target) { targets[name] = t }

// Get returns the target named name.
func Get(name string) (Target, error) {
	t, ok := targets[name]
	if !ok {
		return nil, fmt.Errorf("unknown registration target %q (known: %v)", name, Names())
	}
	return t, nil
}

// Names lists the known targets.
func Names() []string {
	var n []string
	for k := range targets {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Run registers art with the target named in reg and records every
// resulting registration in the catalogue at catPath. The catalogue is only
// written after the target succeeded, so a failed run leaves it unchanged.
func Run(ctx context.Context, reg plan.Register, art Artifact, opt Options, catPath string) ([]catalogue.Registration, error) {
	t, err := Get(reg.Target)
	if err != nil {
		return nil, err
	}
	regs, err := t.Register(ctx, reg, art, opt)
	if err != nil {
		return nil, fmt.Errorf("register %s with %s: %w", art.Name, reg.Target, err)
	}
	if catPath == "" {
		return regs, nil
	}
	if art.Sums.MD5 == "" || art.Sums.SHA256 == "" {
		// The catalogue records both sums of every artifact (verify
		// checks them); hash what the caller did not.
		if art.Sums, err = checksum.File(ctx, art.Path, checksum.Options{Algos: []checksum.Algo{checksum.MD5, checksum.SHA256}}); err != nil {
			return regs, fmt.Errorf("registered, but hashing %s for the catalogue failed: %w", art.Path, err)
		}
	}
	err = catalogue.Update(catPath, func(c *catalogue.Catalogue) error {
		a, err := entry(c, art)
		if err != nil {
			return err
		}
		for _, r := range regs {
			a.SetRegistration(r)
		}
		return nil
	})
	if err != nil {
		return regs, fmt.Errorf("registered, but recording it in the catalogue failed: %w", err)
	}
	return regs, nil
}

// entry is the catalogue's artifact for art (same name and version),
// added when the catalogue does not have it. An entry of that name and
// version with other bytes is an error: recording the registration there
// would say those bytes are registered.
func entry(c *catalogue.Catalogue, art Artifact) (*catalogue.Artifact, error) {
	for i := range c.Artifacts {
		a := &c.Artifacts[i]
		if a.Name != art.Name || a.Version != art.Version {
			continue
		}
		if a.MD5 != art.Sums.MD5 {
			return nil, fmt.Errorf("the catalogue's %s %s is other bytes (md5 %s, this file %s); the registration is not recorded there: register with another -version or -name", a.Name, a.Version, a.MD5, art.Sums.MD5)
		}
		return a, nil
	}
	c.Put(catalogue.Artifact{Name: art.Name, Version: art.Version, Kind: art.Kind, Format: art.Format, Arch: art.Arch,
		Boot: art.Boot, File: art.Path, Size: art.Sums.Size, MD5: art.Sums.MD5, SHA256: art.Sums.SHA256})
	for i := range c.Artifacts {
		if a := &c.Artifacts[i]; a.Name == art.Name && a.Version == art.Version {
			return a, nil
		}
	}
	return nil, fmt.Errorf("catalogue: %s %s vanished after it was added", art.Name, art.Version)
}
