// Package ec2 registers images as EBS-backed AMIs: the raw image goes into
// a new EBS snapshot through the EBS direct APIs (only non-zero 512 KiB
// blocks, in parallel, each with its SHA256, retried with backoff), or, with
// the "via-instance" method, onto a scratch volume attached to a running
// instance over SSH/SFTP and then into a snapshot of that volume. Then
// RegisterImage makes the AMI, with tags, an optional public launch
// permission and copies to other regions. Anything created by a run that
// fails or is canceled is deleted again unless KeepOnError.
package ec2

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	ebstypes "github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/conpaas/cps/clouds/awsaccess"
	"github.com/conpaas/cps/clouds/register"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/internal/progress"
	"github.com/conpaas/cps/plan"
)

// BlockSize is the EBS direct APIs' block size.
const BlockSize = 512 << 10

func init() {
	register.Add(plan.TargetEC2EBS, func(env register.Env) register.Target { return &EBS{Access: env.AWS} })
}

// Methods (plan.Register.Method).
const (
	// MethodDirect writes the snapshot through the EBS direct APIs.
	MethodDirect = "direct"
	// MethodViaInstance writes a new volume attached to a running instance
	// over SSH/SFTP and snapshots it (viainstance.go).
	MethodViaInstance = "via-instance"
)

// EBS is the ec2-ebs registration target.
type EBS struct {
	// Access is how to reach AWS.
	Access awsaccess.Config
	// Workers is how many blocks are uploaded at once (default 16).
	Workers int
	// DeviceTimeout is how long the guest device may take to appear after
	// the attachment (default 2 minutes).
	DeviceTimeout time.Duration
	// SSH holds defaults for the connection to the instance (via-instance);
	// the block's settings win.
	SSH SSH

	set EBSSettings
	cfg aws.Config // after Check
}

// AMISettings are what every EC2 register block says about the AMI.
type AMISettings struct {
	Region string
	// CopyTo lists regions the AMI is copied to.
	CopyTo []string
	Public bool
	Tags   map[string]string
	// Architecture, if set, must be the artifact's (x86_64 or arm64).
	Architecture string
}

func amiSettings(reg plan.Register, access awsaccess.Config) AMISettings {
	return AMISettings{Region: cmp.Or(reg.Region, access.Region), CopyTo: reg.CopyTo, Public: reg.Public, Tags: reg.Tags, Architecture: reg.Architecture}
}

// amiSettingNames are the block's names of AMISettings.
var amiSettingNames = []string{"region", "copy_to", "public", "tags", "architecture"}

// EBSSettings is an ec2-ebs register block.
type EBSSettings struct {
	AMISettings
	// Method is MethodDirect or MethodViaInstance.
	Method string
	// via-instance: the running instance, where the scratch volume is
	// attached (default /dev/xvdf; Nitro instances show it to the guest
	// as an NVMe disk, not under this name) and its path inside the
	// instance (default: Device if it exists there, else the Nitro by-id
	// link of the volume, /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_volXXXX,
	// which names the volume and so can never be another disk), and how
	// to log in.
	Instance, Device, GuestDevice  string
	SSHUser, SSHKey, SSHKnownHosts string
	SSHAddr                        string
	SSHInsecure                    bool
}

// Accepts implements register.Target: a raw disk image (a filesystem, an
// SD card or an appliance would be written byte for byte as the root disk).
func (t *EBS) Accepts(art register.Artifact) error {
	return acceptAMI(plan.TargetEC2EBS, art)
}

// acceptAMI is what both EC2 targets accept: raw disks of an architecture
// EC2 has.
func acceptAMI(target string, art register.Artifact) error {
	err := register.Accept(target, art, []catalogue.Kind{catalogue.KindRaw}, []catalogue.Format{catalogue.FormatRaw},
		"register a raw disk image (the kind raw, e.g. conpaas.img; qemu-img convert -O raw makes one of a qcow2 or VMDK), or use the glance target")
	if err != nil {
		return err
	}
	if art.Arch != "" && art.Arch != catalogue.ArchAMD64 && art.Arch != catalogue.ArchARM64 {
		return fmt.Errorf("%s is a %s image; EC2 runs only amd64 (x86_64) and arm64", art.Path, art.Arch)
	}
	return nil
}

// Settings implements register.Target.
func (t *EBS) Settings() []string {
	return append([]string{"method", "instance", "device", "guest_device", "ssh_user", "ssh_key", "ssh_known_hosts", "ssh_addr", "ssh_insecure_ignore_host_key"}, amiSettingNames...)
}

// Prepare implements register.Target.
func (t *EBS) Prepare(reg plan.Register) error {
	if err := register.Foreign(reg, t.Settings()...); err != nil {
		return err
	}
	t.set = EBSSettings{AMISettings: amiSettings(reg, t.Access), Method: cmp.Or(reg.Method, MethodDirect), Instance: reg.Instance,
		Device: reg.Device, GuestDevice: reg.GuestDevice, SSHUser: reg.SSHUser, SSHKey: reg.SSHKey, SSHKnownHosts: reg.SSHKnownHosts,
		SSHAddr: reg.SSHAddr, SSHInsecure: reg.SSHInsecure}
	switch t.set.Method {
	case MethodDirect:
	case MethodViaInstance:
		if t.set.Instance == "" {
			return errors.New("method via-instance needs the id of a running EC2 instance to attach the volume to: set instance in the register block or -instance ID")
		}
	default:
		return fmt.Errorf("unknown method %q (use %q: EBS direct APIs, or %q: write a volume through an instance over SSH)", t.set.Method, MethodDirect, MethodViaInstance)
	}
	return nil
}

// Check implements register.Target: the credentials and the region.
func (t *EBS) Check(ctx context.Context) error {
	cfg, err := checkAccess(ctx, t.Access, t.set.AMISettings)
	t.cfg = cfg
	return err
}

// created is what a run made, for cleanup.
type created struct {
	region    string
	snapshots []string
	images    []string
	volumes   []string // via-instance scratch volumes (detached, then deleted)
}

// Register implements register.Target.
func (t *EBS) Register(ctx context.Context, art register.Artifact, opt register.Options) ([]catalogue.Registration, error) {
	if err := checkBoot(art, t.set.AMISettings); err != nil {
		return nil, err
	}
	r := &amiRun{cfg: t.cfg, ec2: ec2.NewFromConfig(t.cfg), set: t.set.AMISettings, art: art, target: plan.TargetEC2EBS,
		name: amiName(art, opt, time.Now())}
	var err error
	if r.old, err = checkNames(ctx, t.cfg, append([]string{r.set.Region}, r.set.CopyTo...), r.name, art, opt); err != nil {
		return nil, err
	}
	f, err := os.Open(art.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	r.done = map[string]*created{r.set.Region: {region: r.set.Region}}
	ok := false
	defer func() {
		if ok || opt.KeepOnError {
			return
		}
		// A new context: the run's may be canceled already (Ctrl-C).
		// Detaching a scratch volume before deleting it takes a while.
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		for region, c := range r.done {
			t.cleanup(cctx, t.cfg, region, c)
		}
	}()

	var snap string
	if t.set.Method == MethodViaInstance {
		snap, err = t.viaInstance(ctx, r, f, st.Size())
	} else {
		snap, err = t.upload(ctx, r, f, st.Size())
	}
	if err != nil {
		return nil, err
	}
	regs, err := r.publish(ctx, snap)
	if err != nil {
		return nil, err
	}
	ok = true
	return regs, nil
}

// amiRun is one run's state, shared by its steps: the AWS configuration,
// the block's AMI settings, the artifact, the AMI's name, the AMIs of that
// name that -replace replaces, and what the run created (for cleanup).
type amiRun struct {
	cfg    aws.Config
	ec2    *ec2.Client
	set    AMISettings
	art    register.Artifact
	target string
	name   string
	old    existing
	done   map[string]*created
}

// publish registers the AMI from a completed snapshot (both ec2-ebs
// methods end here).
func (r *amiRun) publish(ctx context.Context, snap string) ([]catalogue.Registration, error) {
	progress.Logf("%s: %s: snapshot %s complete, registering %s", r.target, r.set.Region, snap, r.name)
	return r.register(ctx, ebsImage(r.name, snap, r.art), snap, "")
}

// register registers the AMI in (after -replace's deregistration of the
// old one), tags it, makes it public if asked and copies it to the CopyTo
// regions, recording what it creates: the end of every EC2 method.
func (r *amiRun) register(ctx context.Context, in *ec2.RegisterImageInput, snap, location string) ([]catalogue.Registration, error) {
	if err := r.old.deregister(ctx, r.ec2, r.set.Region); err != nil {
		return nil, err
	}
	out, err := r.ec2.RegisterImage(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("RegisterImage in %s: %w", r.set.Region, explain(err))
	}
	ami := aws.ToString(out.ImageId)
	r.done[r.set.Region].images = append(r.done[r.set.Region].images, ami)
	if err := r.finish(ctx, r.ec2, ami, snap); err != nil {
		return nil, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	regs := []catalogue.Registration{{Cloud: catalogue.CloudEC2, Target: r.target, Region: r.set.Region, ImageID: ami, SnapshotID: snap, Location: location, Time: now}}
	copies, err := r.copyTo(ctx, ami)
	regs = append(regs, copies...)
	if err != nil {
		return nil, err
	}
	return regs, nil
}

// finish tags the AMI (and its snapshot) and makes it public if asked.
func (r *amiRun) finish(ctx context.Context, c *ec2.Client, ami, snap string) error {
	tags := []ec2types.Tag{{Key: aws.String("conpaas:name"), Value: aws.String(r.art.Name)},
		{Key: aws.String("conpaas:version"), Value: aws.String(r.art.Version)}, {Key: aws.String("conpaas:md5"), Value: aws.String(r.art.Sums.MD5)}}
	keys := make([]string, 0, len(r.set.Tags))
	for k := range r.set.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		tags = append(tags, ec2types.Tag{Key: aws.String(k), Value: aws.String(r.set.Tags[k])})
	}
	res := []string{ami}
	if snap != "" {
		res = append(res, snap)
	}
	if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: res, Tags: tags}); err != nil {
		return fmt.Errorf("CreateTags: %w", explain(err))
	}
	if r.set.Public {
		_, err := c.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{ImageId: aws.String(ami),
			LaunchPermission: &ec2types.LaunchPermissionModifications{Add: []ec2types.LaunchPermission{{Group: ec2types.PermissionGroupAll}}}})
		if err != nil {
			return fmt.Errorf("make %s public: %w", ami, explain(err))
		}
	}
	return nil
}

// upload writes the image's non-zero blocks into a new snapshot.
func (t *EBS) upload(ctx context.Context, r *amiRun, f *os.File, size int64) (string, error) {
	c, art, name, done := ebs.NewFromConfig(r.cfg), r.art, r.name, r.done[r.set.Region]
	gib := (size + 1<<30 - 1) >> 30
	ext, err := sparse.DataExtents(f)
	if err != nil {
		return "", err
	}
	var blocks []int32
	last := int64(-1)
	for _, e := range ext {
		for b := e.Off / BlockSize; b*BlockSize < e.End(); b++ {
			if b > last {
				blocks = append(blocks, int32(b))
				last = b
			}
		}
	}
	start, err := c.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(gib), Description: aws.String(name),
		Tags: []ebstypes.Tag{{Key: aws.String("conpaas:md5"), Value: aws.String(art.Sums.MD5)}}, Timeout: aws.Int32(60)})
	if err != nil {
		return "", fmt.Errorf("StartSnapshot: %w", explain(err))
	}
	snap := aws.ToString(start.SnapshotId)
	done.snapshots = append(done.snapshots, snap)

	workers := t.Workers
	if workers <= 0 {
		workers = 16
	}
	bar := progress.New("ebs "+snap, int64(len(blocks))*BlockSize)
	defer bar.Finish()
	var (
		mu    sync.Mutex
		sums  = map[int32][]byte{}
		first error
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan int32)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, BlockSize)
			for b := range jobs {
				clear(buf)
				n, err := f.ReadAt(buf, int64(b)*BlockSize)
				if err != nil && !errors.Is(err, io.EOF) {
					mu.Lock()
					first = errors.Join(first, fmt.Errorf("read block %d: %w", b, err))
					mu.Unlock()
					cancel()
					continue
				}
				if n == 0 || sparse.IsZero(buf) {
					bar.Add64(BlockSize)
					continue // a zero block is what a snapshot holds anyway
				}
				sum := sha256.Sum256(buf)
				_, err = c.PutSnapshotBlock(ctx, &ebs.PutSnapshotBlockInput{SnapshotId: aws.String(snap), BlockIndex: aws.Int32(b),
					BlockData: &byteReader{b: buf}, DataLength: aws.Int32(BlockSize),
					Checksum: aws.String(base64.StdEncoding.EncodeToString(sum[:])), ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256})
				mu.Lock()
				if err != nil {
					if first == nil {
						first = fmt.Errorf("PutSnapshotBlock %d of %s: %w", b, snap, explain(err))
					}
					cancel()
				} else {
					sums[b] = sum[:]
				}
				mu.Unlock()
				bar.Add64(BlockSize)
			}
		}()
	}
	for _, b := range blocks {
		select {
		case jobs <- b:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	if first != nil {
		return "", first
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	idx := make([]int, 0, len(sums))
	for b := range sums {
		idx = append(idx, int(b))
	}
	sort.Ints(idx)
	h := sha256.New()
	for _, b := range idx {
		h.Write(sums[int32(b)])
	}
	_, err = c.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{SnapshotId: aws.String(snap), ChangedBlocksCount: aws.Int32(int32(len(sums))),
		Checksum: aws.String(base64.StdEncoding.EncodeToString(h.Sum(nil))), ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
		ChecksumAggregationMethod: ebstypes.ChecksumAggregationMethodChecksumAggregationLinear})
	if err != nil {
		return "", fmt.Errorf("CompleteSnapshot %s: %w", snap, explain(err))
	}
	progress.Logf("ec2-ebs: %d data blocks of %d uploaded into %s (%d GiB volume)", len(sums), (size+BlockSize-1)/BlockSize, snap, gib)
	return snap, nil
}

// byteReader is a seekable body the SDK can rewind for a retry.
type byteReader struct {
	b   []byte
	off int64
}

func (r *byteReader) Read(p []byte) (int, error) {
	if r.off >= int64(len(r.b)) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += int64(n)
	return n, nil
}

func (r *byteReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		r.off = off
	case io.SeekCurrent:
		r.off += off
	case io.SeekEnd:
		r.off = int64(len(r.b)) + off
	}
	return r.off, nil
}

func (t *EBS) cleanup(ctx context.Context, cfg aws.Config, region string, c *created) {
	rc := cfg.Copy()
	rc.Region = region
	ec := ec2.NewFromConfig(rc)
	for _, id := range c.images {
		if _, err := ec.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(id)}); err != nil {
			progress.Logf("ec2-ebs: cleanup: could not deregister %s in %s: %v", id, region, err)
		} else {
			progress.Logf("ec2-ebs: cleanup: deregistered %s in %s", id, region)
		}
	}
	for _, id := range c.snapshots {
		if _, err := ec.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)}); err != nil {
			progress.Logf("ec2-ebs: cleanup: could not delete snapshot %s in %s: %v", id, region, err)
		} else {
			progress.Logf("ec2-ebs: cleanup: deleted snapshot %s in %s", id, region)
		}
	}
	for _, id := range c.volumes {
		if err := t.removeVolume(ctx, ec, id); err != nil {
			progress.Logf("ec2-ebs: cleanup: could not delete volume %s in %s: %v", id, region, err)
		} else {
			progress.Logf("ec2-ebs: cleanup: deleted volume %s in %s", id, region)
		}
	}
}

func shortSum(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
