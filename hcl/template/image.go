package template

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/plan"
)

var imageSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "kind", Required: true}, {Name: "arch"}, {Name: "version"}, {Name: "output"},
		{Name: "size"}, {Name: "alignment"}, {Name: "partition_table"}, {Name: "checksums"},
		{Name: "environment"}, {Name: "source"}, {Name: "hostname"}, {Name: "contextualize"},
	},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "distribution"}, {Type: "partition", LabelNames: []string{"name"}},
		{Type: "bootloader"}, {Type: "provisioner", LabelNames: []string{"type"}}, {Type: "vm"},
	},
}

var distributionSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "suite"}, {Name: "mirror"}, {Name: "components"}, {Name: "variant"}, {Name: "packages"}, {Name: "cache_dir"},
}}

var partitionSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "fs", Required: true}, {Name: "label"}, {Name: "size"}, {Name: "mount"}, {Name: "uuid"},
}}

var bootloaderSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "type"}, {Name: "bios"}, {Name: "uefi"}, {Name: "cmdline"}, {Name: "timeout"},
}}

var provisionerSchema = map[string]*hcl.BodySchema{
	"shell": {Attributes: []hcl.AttributeSchema{{Name: "inline"}, {Name: "script"}, {Name: "environment"}}},
	"file":  {Attributes: []hcl.AttributeSchema{{Name: "source"}, {Name: "image"}, {Name: "destination", Required: true}, {Name: "mode"}}},
}

var vmSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "name"}, {Name: "os_type"}, {Name: "cpus"}, {Name: "memory"}, {Name: "disk_controller"}, {Name: "sha1_manifest"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "nic"}},
}

var nicSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "type", Required: true}, {Name: "network"}}}

// hostnameRE is one RFC 1123 label: what /etc/hostname may hold.
var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

var fsKinds = []string{"ext4", "vfat", "swap", "bios_grub", "esp", "none"}

func (l *loader) image(b *hcl.Block, ctx *hcl.EvalContext) (*plan.Image, hcl.Diagnostics) {
	c, diags := b.Body.Content(imageSchema)
	if diags.HasErrors() {
		return nil, diags
	}
	a := &attrs{m: c.Attributes, ctx: ctx}
	img := &plan.Image{Name: b.Labels[0]}
	img.Kind = a.str("kind", "")
	// The kind's spec (builders.Register) has its defaults; an unknown kind
	// is reported here and decoded with zero defaults.
	spec, err := builders.Lookup(img.Kind)
	if err != nil {
		a.errorAt(c.Attributes["kind"], "Invalid value", fmt.Sprintf("\"kind\" is %q; it must be one of %s.", img.Kind, strings.Join(quoteAll(builders.Kinds()), ", ")))
		spec = &builders.Spec{Defaults: builders.Defaults{Ext: ".img"}}
	}
	def := spec.Defaults
	defArch, defSize, defAlign, defTable, ext := def.Arch, def.Size, def.Alignment, def.PartitionTable, def.Ext
	img.Arch = a.str("arch", defArch)
	a.oneOf("arch", img.Arch, "amd64", "arm64", "armhf")
	img.Version = a.str("version", "")
	// Like Packer, outputs are relative to where the tool runs; scripts and
	// files the template reads are relative to the template.
	output := a.str("output", img.Name+ext)
	if d := checkOutput(output, c.Attributes["output"]); d != nil {
		a.diags = append(a.diags, d)
	} else if out, err := filepath.Abs(output); err == nil {
		img.Output = out
	}
	img.Size, _ = a.size("size", defSize, false)
	img.Alignment, _ = a.size("alignment", defAlign, false)
	if img.Alignment%512 != 0 {
		a.errorAt(c.Attributes["alignment"], "Invalid alignment", "alignment must be a multiple of 512 bytes, e.g. \"1MiB\" or \"4MiB\".")
	}
	if img.Size%512 != 0 {
		a.errorAt(c.Attributes["size"], "Invalid size", "size must be a multiple of 512 bytes (the sector size).")
	}
	img.PartitionTable = a.str("partition_table", defTable)
	a.oneOf("partition_table", img.PartitionTable, "gpt", "mbr")
	img.Checksums = a.strList("checksums")
	if img.Checksums == nil {
		img.Checksums = []string{"md5", "sha256"}
	}
	for _, cs := range img.Checksums {
		switch cs {
		case "md5", "sha1", "sha256", "sha512":
		default:
			a.errorAt(c.Attributes["checksums"], "Invalid checksum", fmt.Sprintf("%q is not one of \"md5\", \"sha1\", \"sha256\", \"sha512\".", cs))
		}
	}
	img.Env = a.strMap("environment")
	img.Hostname = a.str("hostname", "")
	if img.Hostname != "" && !hostnameRE.MatchString(img.Hostname) {
		a.errorAt(c.Attributes["hostname"], "Invalid hostname", fmt.Sprintf("%q is not a host name: 1 to 63 letters, digits and hyphens, not starting or ending with a hyphen.", img.Hostname))
	}
	img.NoContextualize = !a.boolean("contextualize", true)
	img.Source = a.str("source", "")
	if img.Source != "" && !strings.ContainsAny(img.Source, "/.") {
		// names another image block; left as is
	} else if img.Source != "" {
		img.Source = l.resolve(img.Source)
	}
	if spec.FromSource && img.Source == "" {
		a.errorAt(nil, "Missing source", fmt.Sprintf("image %q of kind %q needs source = the name of the image block (or the raw image file) that is its disk.", img.Name, img.Kind))
		a.diags[len(a.diags)-1].Subject = b.DefRange.Ptr()
	}
	diags = append(diags, a.diags...)

	names := map[string]bool{}
	fill := 0
	for _, blk := range c.Blocks {
		switch blk.Type {
		case "distribution":
			dc, d := blk.Body.Content(distributionSchema)
			diags = append(diags, d...)
			da := &attrs{m: dc.Attributes, ctx: ctx}
			img.Distribution = plan.Distribution{
				Suite: da.str("suite", "bookworm"), Mirror: da.str("mirror", "http://deb.debian.org/debian"),
				Components: da.strList("components"), Variant: da.str("variant", "minbase"),
				Packages: da.strList("packages"), CacheDir: l.resolve(da.str("cache_dir", "")),
			}
			if img.Distribution.Mirror == "" {
				da.errorAt(dc.Attributes["mirror"], "Missing mirror", "distribution.mirror is empty; set a Debian mirror such as \"http://deb.debian.org/debian\".")
			} else if !strings.Contains(img.Distribution.Mirror, "://") {
				da.errorAt(dc.Attributes["mirror"], "Invalid mirror", fmt.Sprintf("mirror %q is not a URL; write e.g. \"http://deb.debian.org/debian\".", img.Distribution.Mirror))
			}
			if len(img.Distribution.Components) == 0 {
				img.Distribution.Components = []string{"main"}
			}
			da.oneOf("variant", img.Distribution.Variant, "extract", "custom", "essential", "apt", "required", "minbase", "buildd", "important", "debootstrap", "standard")
			diags = append(diags, da.diags...)
		case "partition":
			if spec.Bare {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Partition in an LXC image",
					Detail: "An image of kind \"lxc\" is one filesystem that Nova mounts whole as the container's root; it has no partitions.", Subject: blk.DefRange.Ptr()})
				continue
			}
			pc, d := blk.Body.Content(partitionSchema)
			diags = append(diags, d...)
			pa := &attrs{m: pc.Attributes, ctx: ctx}
			p := plan.Partition{Name: blk.Labels[0], FS: pa.str("fs", ""), Label: pa.str("label", ""),
				Mount: pa.str("mount", ""), UUID: pa.str("uuid", "")}
			pa.oneOf("fs", p.FS, fsKinds...)
			var set bool
			p.Size, set = pa.size("size", 0, true)
			if !set && pc.Attributes["size"] != nil {
				// An invalid size, already reported: not a fill partition.
			} else if !set || p.Size == 0 {
				fill++
				if fill > 1 {
					pa.errorAt(pc.Attributes["size"], "Two fill partitions", fmt.Sprintf("partition %q fills the rest of the disk, as an earlier one does; give one of them a size.", p.Name))
					if pc.Attributes["size"] == nil {
						pa.diags[len(pa.diags)-1].Subject = blk.DefRange.Ptr()
					}
				}
			} else if p.Size%512 != 0 {
				pa.errorAt(pc.Attributes["size"], "Invalid size", "a partition size must be a multiple of 512 bytes.")
			}
			if names[p.Name] {
				pa.diags = append(pa.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate partition",
					Detail: fmt.Sprintf("Partition %q is declared twice.", p.Name), Subject: blk.LabelRanges[0].Ptr()})
			}
			names[p.Name] = true
			diags = append(diags, pa.diags...)
			img.Partitions = append(img.Partitions, p)
		case "bootloader":
			if spec.Bare {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Bootloader in an LXC image",
					Detail: "An image of kind \"lxc\" does not boot: the compute node's kernel runs the container and Nova starts its /sbin/init.", Subject: blk.DefRange.Ptr()})
				continue
			}
			bc, d := blk.Body.Content(bootloaderSchema)
			diags = append(diags, d...)
			ba := &attrs{m: bc.Attributes, ctx: ctx}
			img.Bootloader = plan.Bootloader{Type: ba.str("type", ""), BIOS: ba.boolean("bios", false),
				UEFI: ba.boolean("uefi", false), Cmdline: ba.str("cmdline", ""), Timeout: ba.integer("timeout", 0)}
			ba.oneOf("type", img.Bootloader.Type, "grub", "raspi", "none")
			diags = append(diags, ba.diags...)
		case "provisioner":
			typ := blk.Labels[0]
			schema, ok := provisionerSchema[typ]
			if !ok {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unknown provisioner",
					Detail: fmt.Sprintf("Provisioner type %q is not \"shell\" or \"file\".", typ), Subject: blk.LabelRanges[0].Ptr()})
				continue
			}
			pc, d := blk.Body.Content(schema)
			diags = append(diags, d...)
			pa := &attrs{m: pc.Attributes, ctx: ctx}
			pr := plan.Provisioner{Type: typ}
			switch typ {
			case "shell":
				pr.Inline = pa.strList("inline")
				pr.Script = l.resolve(pa.str("script", ""))
				pr.Env = pa.strMap("environment")
				if (pr.Script == "") == (len(pr.Inline) == 0) {
					pa.errorAt(nil, "Invalid shell provisioner", "A shell provisioner needs exactly one of inline or script.")
					pa.diags[len(pa.diags)-1].Subject = blk.DefRange.Ptr()
				}
				if pr.Script != "" {
					l.readInput(pr.Script, pc.Attributes["script"], pa)
				}
			case "file":
				pr.Source = l.resolve(pa.str("source", ""))
				pr.Image = pa.str("image", "")
				if (pr.Source == "") == (pr.Image == "") {
					pa.errorAt(nil, "Invalid file provisioner", "A file provisioner needs exactly one of source (a file or directory) or image (another image block, whose built artifact is copied in).")
					pa.diags[len(pa.diags)-1].Subject = blk.DefRange.Ptr()
				}
				pr.Destination = pa.str("destination", "")
				pr.Mode = pa.str("mode", "")
				if pr.Destination != "" && !strings.HasPrefix(pr.Destination, "/") {
					pa.errorAt(pc.Attributes["destination"], "Invalid destination", "destination must be an absolute path inside the image.")
				}
				if pr.Source != "" {
					l.readInput(pr.Source, pc.Attributes["source"], pa)
				}
			}
			diags = append(diags, pa.diags...)
			img.Provisioners = append(img.Provisioners, pr)
		case "vm":
			vm, d := l.vm(blk, ctx)
			diags = append(diags, d...)
			img.VM = vm
		}
	}
	return img, diags
}

// readInput records a file (or a directory's files) the build copies into
// the image, for the inputs digest, and reports a missing one.
func (l *loader) readInput(p string, at *hcl.Attribute, a *attrs) {
	err := filepath.Walk(p, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			l.inputs[path] = b
		}
		return nil
	})
	if err != nil {
		a.errorAt(at, "Missing file", fmt.Sprintf("%s: %v.", p, err))
	}
}

func (l *loader) vm(b *hcl.Block, ctx *hcl.EvalContext) (*plan.VM, hcl.Diagnostics) {
	c, diags := b.Body.Content(vmSchema)
	a := &attrs{m: c.Attributes, ctx: ctx}
	// What the block leaves out is the kind's default (its Prepare).
	vm := &plan.VM{Name: a.str("name", ""), OSType: a.str("os_type", ""), CPUs: a.integer("cpus", 0),
		DiskController: a.str("disk_controller", ""), SHA1Manifest: a.boolean("sha1_manifest", false)}
	if m, set := a.size("memory", 0, false); set {
		// memory = 4096 means MiB; memory = "4GiB" is bytes.
		if at := c.Attributes["memory"]; at != nil {
			if v, _ := at.Expr.Value(ctx); v.Type().FriendlyName() == "number" {
				m <<= 20
			}
		}
		vm.MemoryMiB = int(m >> 20)
	}
	a.oneOf("disk_controller", vm.DiskController, "sata", "ide", "scsi")
	diags = append(diags, a.diags...)
	for _, nb := range c.Blocks {
		nc, d := nb.Body.Content(nicSchema)
		diags = append(diags, d...)
		na := &attrs{m: nc.Attributes, ctx: ctx}
		n := plan.NIC{Type: na.str("type", ""), Network: na.str("network", "")}
		na.oneOf("type", n.Type, "nat", "hostonly", "bridged", "intnet")
		diags = append(diags, na.diags...)
		vm.NICs = append(vm.NICs, n)
	}
	return vm, diags
}

var registerSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "target", Required: true}, {Name: "image", Required: true}, {Name: "region"}, {Name: "copy_to"},
	{Name: "public"}, {Name: "bucket"}, {Name: "method"}, {Name: "instance"}, {Name: "architecture"},
	{Name: "tags"}, {Name: "cloud"}, {Name: "disk_format"}, {Name: "container_format"}, {Name: "visibility"},
	{Name: "properties"}, {Name: "account_id"}, {Name: "cert"}, {Name: "private_key"}, {Name: "ec2_cert"},
	{Name: "device"}, {Name: "guest_device"}, {Name: "ssh_user"}, {Name: "ssh_key"}, {Name: "ssh_known_hosts"},
}}

func (l *loader) register(b *hcl.Block, ctx *hcl.EvalContext, images map[string]*hcl.Block) (*plan.Register, hcl.Diagnostics) {
	c, diags := b.Body.Content(registerSchema)
	if diags.HasErrors() {
		return nil, diags
	}
	a := &attrs{m: c.Attributes, ctx: ctx}
	r := &plan.Register{Name: b.Labels[0], Target: a.str("target", ""), Image: a.str("image", ""),
		Region: a.str("region", ""), CopyTo: a.strList("copy_to"), Public: a.boolean("public", false),
		Bucket: a.str("bucket", ""), Method: a.str("method", ""), Instance: a.str("instance", ""),
		Architecture: a.str("architecture", ""), Tags: a.strMap("tags"), Cloud: a.str("cloud", ""),
		DiskFormat: a.str("disk_format", ""), ContainerFormat: a.str("container_format", ""),
		Visibility: a.str("visibility", ""), Properties: a.strMap("properties"),
		AccountID: a.str("account_id", ""), Cert: l.resolve(a.str("cert", "")), PrivateKey: l.resolve(a.str("private_key", "")), EC2Cert: l.resolve(a.str("ec2_cert", "")),
		Device: a.str("device", ""), GuestDevice: a.str("guest_device", ""), SSHUser: a.str("ssh_user", ""),
		SSHKey: l.resolve(a.str("ssh_key", "")), SSHKnownHosts: l.resolve(a.str("ssh_known_hosts", ""))}
	a.oneOf("target", r.Target, plan.TargetEC2EBS, plan.TargetEC2S3, plan.TargetGlance)
	if r.Image != "" && images[r.Image] == nil {
		a.errorAt(c.Attributes["image"], "Unknown image", fmt.Sprintf("register %q names image %q, which no image block defines.", r.Name, r.Image))
	}
	switch r.Target {
	// glance: disk_format and container_format stay as written; the
	// target takes them from the artifact's recorded format (raw + bare,
	// as the seeds register, for a raw image).
	case plan.TargetEC2EBS:
		if r.Method == "" {
			r.Method = "direct"
		}
		a.oneOf("method", r.Method, "direct", "via-instance")
	case plan.TargetEC2S3:
		if r.Method == "" {
			r.Method = "bundle"
		}
		a.oneOf("method", r.Method, "bundle", "import")
		if r.Bucket == "" {
			a.diags = append(a.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Subject: b.DefRange.Ptr(), Summary: "Missing bucket", Detail: fmt.Sprintf("register %q (ec2-s3) needs bucket = \"NAME\" or \"NAME/PREFIX\" for the image's S3 objects.", r.Name)})
		}
	}
	diags = append(diags, a.diags...)
	return r, diags
}
