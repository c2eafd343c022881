// Package register is the common frame of `cpsimage register`: a target
// (ec2-ebs, ec2-s3, glance) turns a built artifact into an image its cloud
// can start, and the frame records the result in the catalogue. Targets add
// a factory with Add from their own packages; each decodes its own block,
// says which artifacts it accepts, and gets its access settings as
// arguments (Env), never from the environment.
package register

import (
	"cmp"
	"context"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/conpaas/cps/clouds/awsaccess"
	"github.com/conpaas/cps/clouds/osauth"

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

// Target registers artifacts on one kind of cloud. A target is made
// fresh for each register block by its factory (New), so its settings are
// its own; Run calls its methods in this order.
type Target interface {
	// Accepts says whether the target can register art (its kind,
	// format, architecture); the error is one sentence saying what to do.
	Accepts(art Artifact) error
	// Settings lists the block settings the target has, as the template
	// names them (region, bucket, ...): a flag given for a template sets
	// them only in the blocks of targets that have them.
	Settings() []string
	// Prepare decodes the register block (the command line's flags
	// already applied) into the target's own settings: defaults, checks,
	// and a refusal of settings that belong to other targets.
	Prepare(reg plan.Register) error
	// Check proves what can be proved before the file is hashed or
	// anything uploaded: the credentials, the region, the endpoint, the
	// bucket. Its errors name the setting that is wrong.
	Check(ctx context.Context) error
	// Register uploads and registers art and returns one registration
	// per region/cloud the image can now be started in. On error (or ctx
	// cancellation) it deletes what it created unless opt.KeepOnError.
	Register(ctx context.Context, art Artifact, opt Options) ([]catalogue.Registration, error)
}

// Env is what the binary hands every target: the access settings it read
// from the environment and the command line. Targets read no environment.
type Env struct {
	AWS awsaccess.Config
	// OpenStack returns the authentication for a clouds.yaml entry (""
	// for the OS_* variables); cpsimage passes osauth.FromEnv.
	OpenStack func(cloud string) (osauth.Config, error)
	// GlanceEndpoint, if set, is a Glance reached without Keystone
	// (auth_strategy = noauth).
	GlanceEndpoint string
}

// Factory makes a target.
type Factory func(env Env) Target

var factories = map[string]Factory{}

// Add makes a target available under name (plan.TargetEC2EBS, ...); each
// target package calls it from init.
func Add(name string, f Factory) { factories[name] = f }

// New makes the target named name.
func New(name string, env Env) (Target, error) {
	f, ok := factories[name]
	if !ok {
		return nil, fmt.Errorf("unknown registration target %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return f(env), nil
}

// Names lists the known targets.
func Names() []string {
	var n []string
	for k := range factories {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Prepare readies t for the block reg and art: Accepts, Prepare, then
// Check, so a wrong kind, a wrong setting or a wrong password is found
// before the file is hashed or anything uploaded.
func Prepare(ctx context.Context, t Target, reg plan.Register, art Artifact) error {
	if err := t.Accepts(art); err != nil {
		return fmt.Errorf("%s: %w", reg.Target, err)
	}
	if err := t.Prepare(reg); err != nil {
		return fmt.Errorf("register %q (%s): %w", cmp.Or(reg.Name, reg.Target), reg.Target, err)
	}
	if err := t.Check(ctx); err != nil {
		return fmt.Errorf("%s: %w", reg.Target, err)
	}
	return nil
}

// Run registers art with t (already Prepared) and records every resulting
// registration in the catalogue at catPath. The catalogue is only written
// after the target succeeded, so a failed run leaves it unchanged.
func Run(ctx context.Context, t Target, target string, art Artifact, opt Options, catPath string) ([]catalogue.Registration, error) {
	if err := t.Accepts(art); err != nil { // the catalogue may have said more than the file did
		return nil, fmt.Errorf("%s: %w", target, err)
	}
	regs, err := t.Register(ctx, art, opt)
	if err != nil {
		return nil, fmt.Errorf("register %s with %s: %w", art.Name, target, err)
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

// PrepareAndRun is Prepare then Run, for callers that have the whole
// artifact at hand (tests, and templates whose artifact the catalogue
// describes).
func PrepareAndRun(ctx context.Context, t Target, reg plan.Register, art Artifact, opt Options, catPath string) ([]catalogue.Registration, error) {
	if err := Prepare(ctx, t, reg, art); err != nil {
		return nil, err
	}
	return Run(ctx, t, reg.Target, art, opt, catPath)
}

// Accept is the common form of Accepts: the kinds and formats a target
// takes, and a sentence saying what to use instead.
func Accept(target string, art Artifact, kinds []catalogue.Kind, formats []catalogue.Format, instead string) error {
	if art.Kind != "" && !slices.Contains(kinds, art.Kind) {
		return fmt.Errorf("%s is a %s image, and %s registers only %s; %s", art.Path, art.Kind, target, list(kinds), instead)
	}
	if f := art.FileFormat(); !slices.Contains(formats, f) {
		return fmt.Errorf("%s is a %s file, and %s uploads only %s; %s", art.Path, f, target, list(formats), instead)
	}
	return nil
}

func list[T ~string](v []T) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = string(x)
	}
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// Foreign refuses settings of reg that target does not have: a bucket in a
// glance block, a cloud in an ec2-ebs one. own are the settings' names as
// the template writes them (the plan's JSON names); name, target and
// image are every block's.
func Foreign(reg plan.Register, own ...string) error {
	v := reflect.ValueOf(reg)
	var bad []string
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "name" || name == "target" || name == "image" || slices.Contains(own, name) || v.Field(i).IsZero() {
			continue
		}
		bad = append(bad, name)
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(own)
	sort.Strings(bad)
	what := strings.Join(bad, ", ") + " is not a setting"
	if len(bad) > 1 {
		what = strings.Join(bad, ", ") + " are not settings"
	}
	return fmt.Errorf("%s of %s (its settings: %s); remove it or use the target it belongs to", what, reg.Target, strings.Join(own, ", "))
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
