package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/conpaas/cps/clouds/ec2"
	_ "github.com/conpaas/cps/clouds/glance"
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

func runRegister(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsimage", "register", "[-target T -image FILE [-region R] ...] | [-only NAME] [TEMPLATE]")
	target := fs.String("target", "", "registration target: "+strings.Join(register.Names(), ", "))
	image := fs.String("image", "", "the image `FILE` to register (without a template)")
	name := fs.String("name", "", "artifact name in the catalogue (default: the file name)")
	version := fs.String("version", "", "-image: the artifact's version (default: the catalogue's for these bytes)")
	arch := fs.String("arch", "", "-image: the image's Debian architecture, amd64, arm64 or armhf (default: the catalogue's, else amd64)")
	boot := fs.String("boot", "", "-image: the boot `MODES` bios, uefi or bios,uefi (default: read from the image's partition table, else the catalogue's)")
	region := fs.String("region", "", "EC2 region (default $AWS_REGION)")
	copyTo := fs.String("copy-to", "", "comma-separated regions to copy the AMI to")
	public := fs.Bool("public", false, "make the AMI public")
	cloud := fs.String("cloud", "", "clouds.yaml entry (glance)")
	only := fs.String("only", "", "run only the template's register block `NAME`")
	cat := fs.String("catalogue", catalogue.DefaultPath, "the catalogue `FILE` to read artifacts from and record registrations in")
	keep := fs.Bool("keep-on-error", false, "do not delete what a failed run created (for debugging)")
	method := fs.String("method", "", "ec2-ebs: \"direct\" (EBS direct APIs, the default) or \"via-instance\" (write a volume attached to -instance over SSH, snapshot it); ec2-s3: \"bundle\" (default) or \"import\"")
	// ec2-ebs via-instance
	instance := fs.String("instance", "", "via-instance: the running EC2 instance `ID` to attach the scratch volume to")
	device := fs.String("device", "", "via-instance: where to attach the volume (default /dev/xvdf)")
	guestDevice := fs.String("guest-device", "", "via-instance: the volume's `PATH` on the instance (default: -device, else the Nitro NVMe by-id link)")
	sshUser := fs.String("ssh-user", "", "via-instance: SSH user (default admin; root uses the sftp subsystem, others sftp-server under sudo -n)")
	sshKey := fs.String("ssh-key", "", "via-instance: private key `FILE` of the instance's key pair (default: ssh-agent, ~/.ssh/id_*)")
	sshKnownHosts := fs.String("ssh-known-hosts", "", "via-instance: known_hosts `FILE` the host key must be in (default ~/.ssh/known_hosts)")
	sshAddr := fs.String("ssh-addr", "", "via-instance: connect to `HOST[:PORT]` instead of the instance's address (a tunnel)")
	sshInsecure := fs.Bool("ssh-insecure-ignore-host-key", false, "via-instance: do not check the instance's host key")
	bucket := fs.String("bucket", "", "ec2-s3: S3 `BUCKET[/PREFIX]` for the bundle or the import")
	account := fs.String("account-id", "", "ec2-s3 bundle: your AWS account id (default $AWS_ACCOUNT_ID)")
	cert := fs.String("cert", "", "ec2-s3 bundle: your X.509 certificate `PEM` (default $EC2_CERT)")
	key := fs.String("private-key", "", "ec2-s3 bundle: its RSA private key `PEM` (default $EC2_PRIVATE_KEY)")
	ec2Cert := fs.String("ec2-cert", "", "ec2-s3 bundle: EC2's certificate `PEM` (cert-ec2.pem of ec2-ami-tools)")
	tf := addTemplateFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	opt := register.Options{KeepOnError: *keep}
	// Flags given override the register blocks' attributes.
	override := func(reg *plan.Register) {
		for _, o := range []struct {
			dst *string
			v   string
		}{{&reg.Method, *method}, {&reg.Instance, *instance}, {&reg.Device, *device},
			{&reg.GuestDevice, *guestDevice}, {&reg.SSHUser, *sshUser}, {&reg.SSHKey, *sshKey}, {&reg.SSHKnownHosts, *sshKnownHosts},
			{&reg.Bucket, *bucket}, {&reg.AccountID, *account}, {&reg.Cert, *cert}, {&reg.PrivateKey, *key}, {&reg.EC2Cert, *ec2Cert}} {
			if o.v != "" {
				*o.dst = o.v
			}
		}
	}
	if t, err := register.Get(plan.TargetEC2EBS); err == nil {
		if e, ok := t.(*ec2.EBS); ok {
			e.SSH.Addr, e.SSH.InsecureIgnoreHostKey = *sshAddr, *sshInsecure
		}
	}

	if *image != "" {
		if *target == "" {
			return cli.Usagef("-image needs -target (%s)", strings.Join(register.Names(), ", "))
		}
		fl := fileFlags{name: *name, version: *version}
		var err error
		if fl.arch, err = parseArch(*arch); err != nil {
			return cli.Usagef("%v", err)
		}
		if *boot != "" {
			if fl.boot, err = parseBoot(*boot); err != nil {
				return cli.Usagef("%v", err)
			}
		}
		art, err := artifactFromFile(ctx, *image, fl, *cat)
		if err != nil {
			return err
		}
		reg := plan.Register{Name: *target, Target: *target, Image: art.Name, Region: *region, Public: *public, Cloud: *cloud}
		if *copyTo != "" {
			reg.CopyTo = strings.Split(*copyTo, ",")
		}
		override(&reg)
		return doRegister(ctx, reg, art, opt, *cat)
	}

	p, err := tf.load(ctx, fs.Args())
	if err != nil {
		return err
	}
	if *version != "" || *arch != "" || *boot != "" {
		return cli.Usagef("-version, -arch and -boot describe a file given with -image; with a template they come from the catalogue")
	}
	if len(p.Registers) == 0 {
		return cli.Usagef("%s has no register blocks; add one or use -target and -image", p.TemplatePath)
	}
	c, err := catalogue.Load(*cat)
	if err != nil {
		return cli.WithCode(cli.ExitUsage, err)
	}
	ran := 0
	for _, reg := range p.Registers {
		if *only != "" && reg.Name != *only {
			continue
		}
		if *region != "" {
			reg.Region = *region
		}
		if *public {
			reg.Public = true
		}
		override(&reg)
		a := c.Find(reg.Image)
		if a == nil {
			return cli.WithCode(cli.ExitUsage, fmt.Errorf("image %q is not in the catalogue %s; run `cpsimage build` first", reg.Image, *cat))
		}
		path := a.File
		if !filepath.IsAbs(path) {
			path = filepath.Join(filepath.Dir(*cat), path)
		}
		art, err := artifactFromCatalogue(a, path)
		if err != nil {
			return err
		}
		if err := checkUnchanged(ctx, art); err != nil {
			return err
		}
		if err := doRegister(ctx, reg, art, opt, *cat); err != nil {
			return err
		}
		ran++
	}
	if ran == 0 {
		return cli.Usagef("no register block named %q", *only)
	}
	return nil
}

func doRegister(ctx context.Context, reg plan.Register, art register.Artifact, opt register.Options, cat string) error {
	regs, err := register.Run(ctx, reg, art, opt, cat)
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
func artifactFromFile(ctx context.Context, path string, fl fileFlags, cat string) (register.Artifact, error) {
	name := fl.name
	if name == "" {
		name = trimExt(filepath.Base(path))
	}
	facts, err := inspectFile(path)
	if err != nil {
		return register.Artifact{}, cli.WithCode(cli.ExitUsage, err)
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
