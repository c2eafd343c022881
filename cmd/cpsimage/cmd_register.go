package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/conpaas/cps/clouds/awsaccess"
	_ "github.com/conpaas/cps/clouds/ec2"
	"github.com/conpaas/cps/clouds/glance"
	"github.com/conpaas/cps/clouds/osauth"
	"github.com/conpaas/cps/clouds/register"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/internal/cli"
	"github.com/conpaas/cps/plan"
)

func init() {
	commands.Add(&cli.Command{
		Name:    "register",
		Summary: "make a built image startable in a cloud (ec2-ebs or ec2-s3 AMI, glance) and record it in the catalogue",
		Run:     runRegister,
	})
}

// registerFlags are register's flags. The settings of a register block
// (blockFlags) override the template's blocks, or make the block of a file
// given with -image; each target refuses the ones it does not have.
type registerFlags struct {
	fs                                       *flag.FlagSet
	target, image, name, version, arch, boot *string
	only, cat                                *string
	keep, replace, forceNewName              *bool
	tf                                       *templateFlags
}

// blockFlags maps a flag to the register block setting it sets.
var blockFlags = []struct {
	flag, setting, usage string
	set                  func(r *plan.Register, v string)
}{
	{"region", "region", "EC2 region (default $AWS_REGION; OpenStack's is OS_REGION_NAME or the clouds.yaml entry's)", func(r *plan.Register, v string) { r.Region = v }},
	{"copy-to", "copy_to", "comma-separated regions to copy the AMI to", func(r *plan.Register, v string) { r.CopyTo = strings.Split(v, ",") }},
	{"cloud", "cloud", "glance: the clouds.yaml entry (default $OS_CLOUD, else the OS_* variables)", func(r *plan.Register, v string) { r.Cloud = v }},
	{"method", "method", "ec2-ebs: \"direct\" (EBS direct APIs, the default) or \"via-instance\" (write a volume attached to -instance over SSH, snapshot it); ec2-s3: \"bundle\" (default) or \"import\"", func(r *plan.Register, v string) { r.Method = v }},
	{"instance", "instance", "ec2-ebs via-instance: the running EC2 instance `ID` to attach the scratch volume to", func(r *plan.Register, v string) { r.Instance = v }},
	{"device", "device", "ec2-ebs via-instance: where to attach the volume (default /dev/xvdf)", func(r *plan.Register, v string) { r.Device = v }},
	{"guest-device", "guest_device", "ec2-ebs via-instance: the volume's `PATH` on the instance (default: -device, else the Nitro NVMe by-id link)", func(r *plan.Register, v string) { r.GuestDevice = v }},
	{"ssh-user", "ssh_user", "ec2-ebs via-instance: SSH user (default admin; root uses the sftp subsystem, others sftp-server under sudo -n)", func(r *plan.Register, v string) { r.SSHUser = v }},
	{"ssh-key", "ssh_key", "ec2-ebs via-instance: private key `FILE` of the instance's key pair (default: ssh-agent, ~/.ssh/id_*)", func(r *plan.Register, v string) { r.SSHKey = v }},
	{"ssh-known-hosts", "ssh_known_hosts", "ec2-ebs via-instance: known_hosts `FILE` the host key must be in (default ~/.ssh/known_hosts)", func(r *plan.Register, v string) { r.SSHKnownHosts = v }},
	{"ssh-addr", "ssh_addr", "ec2-ebs via-instance: connect to `HOST[:PORT]` instead of the instance's address (a tunnel)", func(r *plan.Register, v string) { r.SSHAddr = v }},
	{"bucket", "bucket", "ec2-s3: S3 `BUCKET[/PREFIX]` for the bundle or the import", func(r *plan.Register, v string) { r.Bucket = v }},
	{"account-id", "account_id", "ec2-s3 bundle: your AWS account id (default $AWS_ACCOUNT_ID)", func(r *plan.Register, v string) { r.AccountID = v }},
	{"cert", "cert", "ec2-s3 bundle: your X.509 certificate `PEM` (default $EC2_CERT)", func(r *plan.Register, v string) { r.Cert = v }},
	{"private-key", "private_key", "ec2-s3 bundle: its RSA private key `PEM` (default $EC2_PRIVATE_KEY)", func(r *plan.Register, v string) { r.PrivateKey = v }},
	{"ec2-cert", "ec2_cert", "ec2-s3 bundle: EC2's certificate `PEM` (cert-ec2.pem of ec2-ami-tools)", func(r *plan.Register, v string) { r.EC2Cert = v }},
}

// blockBools are the boolean block flags.
var blockBools = []struct {
	flag, setting, usage string
	set                  func(r *plan.Register)
}{
	{"public", "public", "ec2: make the AMI public", func(r *plan.Register) { r.Public = true }},
	{"ssh-insecure-ignore-host-key", "ssh_insecure_ignore_host_key", "ec2-ebs via-instance: do not check the instance's host key", func(r *plan.Register) { r.SSHInsecure = true }},
}

func newRegisterFlags() *registerFlags {
	fs := cli.NewFlagSet("cpsimage", "register", "[-target T -image FILE [-region R] ...] | [-only NAME] [TEMPLATE]")
	f := &registerFlags{fs: fs,
		target:       fs.String("target", "", "registration target: "+strings.Join(register.Names(), ", ")),
		image:        fs.String("image", "", "the image `FILE` to register (without a template)"),
		name:         fs.String("name", "", "-image: the artifact's name in the catalogue (default: the file name)"),
		version:      fs.String("version", "", "-image: the artifact's version (default: the catalogue's for these bytes)"),
		arch:         fs.String("arch", "", "-image: the image's Debian architecture, amd64, arm64 or armhf (default: the catalogue's, else amd64)"),
		boot:         fs.String("boot", "", "-image: the boot `MODES` bios, uefi or bios,uefi (default: read from the image's partition table, else the catalogue's)"),
		only:         fs.String("only", "", "run only the template's register block `NAME`"),
		cat:          fs.String("catalogue", catalogue.DefaultPath, "the catalogue `FILE` to read artifacts from and record registrations in"),
		keep:         fs.Bool("keep-on-error", false, "do not delete what a failed run created (for debugging)"),
		replace:      fs.Bool("replace", false, "an image of the same name (other bytes) is replaced: deregistered (EC2) or deleted (Glance) once the new one is ready"),
		forceNewName: fs.Bool("force-new-name", false, "an image of the same name exists: register under a new name (the run's time appended) beside it"),
	}
	for _, b := range blockFlags {
		fs.String(b.flag, "", b.usage)
	}
	for _, b := range blockBools {
		fs.Bool(b.flag, false, b.usage)
	}
	f.tf = addTemplateFlags(fs)
	return f
}

// apply sets the block settings given on the command line: all of them
// (the target refuses those it does not have) when only is nil, else
// those in only (a template's blocks: -region goes to its EC2 blocks and
// its glance ones, -bucket only to its ec2-s3 ones).
func (f *registerFlags) apply(reg *plan.Register, only []string) {
	has := func(setting string) bool { return only == nil || slices.Contains(only, setting) }
	f.fs.Visit(func(fl *flag.Flag) {
		for _, b := range blockFlags {
			if b.flag == fl.Name && has(b.setting) {
				b.set(reg, fl.Value.String())
			}
		}
		for _, b := range blockBools {
			if b.flag == fl.Name && fl.Value.String() == "true" && has(b.setting) {
				b.set(reg)
			}
		}
	})
}

// registerEnv reads the access settings from the environment: here, and
// only here, so the cloud packages take them as arguments.
func registerEnv() register.Env {
	return register.Env{AWS: awsaccess.FromEnv(os.Getenv), OpenStack: osauth.FromEnv, GlanceEndpoint: os.Getenv(glance.EnvEndpoint)}
}

func runRegister(ctx context.Context, args []string) error {
	f := newRegisterFlags()
	if err := cli.Parse(f.fs, args); err != nil {
		return err
	}
	opt := register.Options{KeepOnError: *f.keep, Replace: *f.replace, ForceNewName: *f.forceNewName}
	if *f.replace && *f.forceNewName {
		return cli.Usagef("-replace and -force-new-name exclude each other: replace the image of that name, or register beside it")
	}
	env := registerEnv()
	if *f.image != "" {
		return f.registerFile(ctx, env, opt)
	}
	return f.registerTemplate(ctx, env, opt)
}

// registerFile registers a file given with -image: the target is made and
// checked (kind, settings, credentials) before the file is hashed.
func (f *registerFlags) registerFile(ctx context.Context, env register.Env, opt register.Options) error {
	if *f.target == "" {
		return cli.Usagef("-image needs -target (%s)", strings.Join(register.Names(), ", "))
	}
	fl := fileFlags{name: *f.name, version: *f.version}
	var err error
	if fl.arch, err = parseArch(*f.arch); err != nil {
		return cli.Usagef("%v", err)
	}
	if *f.boot != "" {
		if fl.boot, err = parseBoot(*f.boot); err != nil {
			return cli.Usagef("%v", err)
		}
	}
	t, err := register.New(*f.target, env)
	if err != nil {
		return cli.WithCode(cli.ExitUsage, err)
	}
	facts, err := inspectFile(*f.image)
	if err != nil {
		return cli.WithCode(cli.ExitUsage, err)
	}
	reg := plan.Register{Name: *f.target, Target: *f.target}
	f.apply(&reg, nil)
	// What the bytes say is enough to accept or refuse the file; the
	// catalogue's entry, found by the digest, is checked again by Run.
	pre := register.Artifact{Path: *f.image, Kind: facts.Kind, Format: facts.Format, Arch: fl.arch}
	if err := register.Prepare(ctx, t, reg, pre); err != nil {
		return err
	}
	art, err := artifactFromFile(ctx, *f.image, fl, *f.cat, facts)
	if err != nil {
		return err
	}
	return doRegister(ctx, t, reg, art, opt, *f.cat)
}

// registerTemplate runs the template's register blocks on the artifacts
// the catalogue records for them.
func (f *registerFlags) registerTemplate(ctx context.Context, env register.Env, opt register.Options) error {
	if *f.version != "" || *f.arch != "" || *f.boot != "" || *f.name != "" || *f.target != "" {
		return cli.Usagef("-target, -name, -version, -arch and -boot describe a file given with -image; with a template they come from its register blocks and the catalogue")
	}
	p, err := f.tf.load(ctx, f.fs.Args())
	if err != nil {
		return err
	}
	if len(p.Registers) == 0 {
		return cli.Usagef("%s has no register blocks; add one or use -target and -image", p.TemplatePath)
	}
	c, err := catalogue.Load(*f.cat)
	if err != nil {
		return cli.WithCode(cli.ExitUsage, err)
	}
	ran := 0
	for _, reg := range p.Registers {
		if *f.only != "" && reg.Name != *f.only {
			continue
		}
		t, err := register.New(reg.Target, env)
		if err != nil {
			return cli.WithCode(cli.ExitUsage, err)
		}
		f.apply(&reg, t.Settings())
		a := c.Find(reg.Image)
		if a == nil {
			return cli.WithCode(cli.ExitUsage, fmt.Errorf("image %q is not in the catalogue %s; run `cpsimage build` first", reg.Image, *f.cat))
		}
		path := a.File
		if !filepath.IsAbs(path) {
			path = filepath.Join(filepath.Dir(*f.cat), path)
		}
		art, err := artifactFromCatalogue(a, path)
		if err != nil {
			return err
		}
		if err := register.Prepare(ctx, t, reg, art); err != nil {
			return err
		}
		if err := checkUnchanged(ctx, art); err != nil {
			return err
		}
		if err := doRegister(ctx, t, reg, art, opt, *f.cat); err != nil {
			return err
		}
		ran++
	}
	if ran == 0 {
		return cli.Usagef("no register block named %q", *f.only)
	}
	return nil
}

func doRegister(ctx context.Context, t register.Target, reg plan.Register, art register.Artifact, opt register.Options, cat string) error {
	regs, err := register.Run(ctx, t, reg.Target, art, opt, cat)
	if err != nil {
		if ctx.Err() != nil {
			return cli.WithCode(cli.ExitCanceled, fmt.Errorf("canceled; what this run created was deleted: %w", err))
		}
		return err
	}
	for _, r := range regs {
		fmt.Fprintf(cli.Stdout, "%s %s %s: %s %s\n", art.Name, r.Target, r.Region, r.ImageID, r.SnapshotID)
	}
	return nil
}

// fileFlags are what -image's flags say about the file.
type fileFlags struct {
	name, version string
	arch          catalogue.Arch
	boot          catalogue.BootModes // nil: not given
}

// artifactFromFile describes a file given with -image. Each field comes
// from the flags, else from the file itself (its format; its boot modes
// from its partition table), else from the catalogue's entry for these
// bytes; a flag or the file disagreeing with that entry is an error that
// names the field, since registering would record two truths.
func artifactFromFile(ctx context.Context, path string, fl fileFlags, cat string, facts fileFacts) (register.Artifact, error) {
	name := fl.name
	if name == "" {
		name = trimExt(filepath.Base(path))
	}
	c, err := catalogue.Load(cat)
	if err != nil {
		return register.Artifact{}, cli.WithCode(cli.ExitUsage, err)
	}
	sums, err := hashFile(ctx, path, []checksum.Algo{checksum.MD5, checksum.SHA256})
	if err != nil {
		return register.Artifact{}, cli.WithCode(cli.ExitUsage, err)
	}
	art := register.Artifact{Path: path, Name: name, Sums: sums, Version: fl.version, Arch: fl.arch, Boot: fl.boot,
		Kind: facts.Kind, Format: facts.Format}
	if art.Boot == nil {
		art.Boot = facts.Boot
	}
	if facts.BootErr != nil {
		art.BootUnknown = facts.BootErr.Error()
	}
	e := sameBytes(c, name, fl.version, sums)
	if e == nil {
		// Not in the catalogue: the name and version must not be taken
		// by other bytes, or the registration would be recorded there.
		if o := nameVersion(c, name, fl.version); o != nil {
			return register.Artifact{}, cli.WithCode(cli.ExitUsage, fmt.Errorf("the catalogue %s has %s %s with other bytes (md5 %s; %s has %s): give another -version or -name", cat, name, o.Version, o.MD5, path, sums.MD5))
		}
		if art.Kind == "" {
			art.Kind = catalogue.KindRaw
		}
		if art.Arch == "" {
			art.Arch = catalogue.ArchAMD64
		}
		return art, nil
	}
	// A disagreement names the field, where each side comes from and what
	// to do: the catalogue may be wrong (edited, an older cpsimage) or the
	// flag may be.
	disagree := func(field, said, got, want, fix string) error {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("%s: %s %s, but the catalogue %s records these bytes (%s %s, md5 %s) with %s %s; %s",
			field, said, got, cat, e.Name, e.Version, e.MD5, field, want, fix))
	}
	const dropFlag = "drop the flag, or register the file under another -name"
	const fixEntry = "the catalogue entry is wrong or the file is not what was built: correct the entry (cpsimage catalogue add) or run cpsimage verify"
	if art.Version == "" {
		art.Version = e.Version
	} else if art.Version != e.Version {
		return art, disagree("version", "-version is", art.Version, e.Version, dropFlag)
	}
	if art.Arch == "" {
		art.Arch = e.Arch
	} else if e.Arch != "" && art.Arch != e.Arch {
		return art, disagree("arch", "-arch is", string(art.Arch), string(e.Arch), dropFlag)
	}
	switch {
	case art.Boot == nil:
		art.Boot = e.Boot
	case e.Boot != nil && art.Boot.String() != e.Boot.String():
		if fl.boot != nil {
			return art, disagree("boot", "-boot is", art.Boot.String(), e.Boot.String(), dropFlag)
		}
		return art, disagree("boot", "the image's partition table says", art.Boot.String(), e.Boot.String(), fixEntry)
	}
	if e.Format != "" && art.Format != e.Format {
		return art, disagree("format", "the file is", string(art.Format), string(e.Format), fixEntry)
	}
	if art.Kind == "" {
		art.Kind = e.Kind
	} else if e.Kind != "" && art.Kind != e.Kind {
		return art, disagree("kind", "the file's bytes say", string(art.Kind), string(e.Kind), fixEntry)
	}
	if art.Arch == "" {
		art.Arch = catalogue.ArchAMD64
	}
	return art, nil
}

// sameBytes is the catalogue's entry named name with these bytes: of
// version version when given, else any.
func sameBytes(c *catalogue.Catalogue, name, version string, sums checksum.Sums) *catalogue.Artifact {
	var any *catalogue.Artifact
	for i := range c.Artifacts {
		a := &c.Artifacts[i]
		if a.Name != name || a.MD5 != sums.MD5 || a.Size != sums.Size {
			continue
		}
		if a.Version == version {
			return a
		}
		if any == nil {
			any = a
		}
	}
	return any
}

// nameVersion is the catalogue's entry name/version (any bytes), or nil.
func nameVersion(c *catalogue.Catalogue, name, version string) *catalogue.Artifact {
	for i := range c.Artifacts {
		if a := &c.Artifacts[i]; a.Name == name && a.Version == version {
			return a
		}
	}
	return nil
}

// artifactFromCatalogue describes the catalogue's artifact a, whose file
// is at path. Catalogues written before the format and boot modes were
// recorded lack them: they are then read from the file, never from a
// template (the catalogue alone says what was built).
func artifactFromCatalogue(a *catalogue.Artifact, path string) (register.Artifact, error) {
	art := register.Artifact{Path: path, Name: a.Name, Version: a.Version, Kind: a.Kind, Format: a.Format, Arch: a.Arch, Boot: a.Boot,
		Sums: checksum.Sums{Size: a.Size, MD5: a.MD5, SHA256: a.SHA256}}
	if art.Format != "" && art.Boot != nil {
		return art, nil
	}
	facts, err := inspectFile(path)
	if err != nil {
		return art, cli.WithCode(cli.ExitUsage, fmt.Errorf("the catalogue's file for %s: %w", a.Name, err))
	}
	if art.Format == "" {
		art.Format = facts.Format
	}
	if art.Boot == nil {
		art.Boot = facts.Boot
	}
	if facts.BootErr != nil {
		art.BootUnknown = facts.BootErr.Error()
	}
	return art, nil
}

// checkUnchanged refuses to register a file whose bytes are no longer the
// catalogue's (rebuilt or damaged since).
func checkUnchanged(ctx context.Context, art register.Artifact) error {
	st, err := os.Stat(art.Path)
	if err != nil {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("the catalogue's file for %s: %w", art.Name, err))
	}
	if st.Size() != art.Sums.Size {
		return cli.WithCode(cli.ExitFailure, errors.New(art.Path+" is not the size the catalogue records; rebuild it or run cpsimage verify"))
	}
	sums, err := hashFile(ctx, art.Path, []checksum.Algo{checksum.MD5})
	if err != nil {
		return err
	}
	if sums.MD5 != art.Sums.MD5 {
		return cli.WithCode(cli.ExitFailure, fmt.Errorf("%s has MD5 %s but the catalogue says %s; rebuild it or run cpsimage verify", art.Path, sums.MD5, art.Sums.MD5))
	}
	return nil
}
