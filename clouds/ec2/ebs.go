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
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	ebstypes "github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/conpaas/cps/clouds/register"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/internal/progress"
	"github.com/conpaas/cps/plan"
)

// BlockSize is the EBS direct APIs' block size.
const BlockSize = 512 << 10

func init() { register.Add(plan.TargetEC2EBS, &EBS{}) }

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
	// Endpoint overrides the AWS endpoints (tests: the fake).
	Endpoint string
	// Credentials overrides the credential chain (tests).
	Credentials aws.CredentialsProvider
	// Workers is how many blocks are uploaded at once (default 16).
	Workers int

	// Device is where via-instance attaches the scratch volume (default
	// /dev/xvdf; the register block's device wins). Nitro instances show
	// it to the guest as an NVMe disk (/dev/nvme1n1, ...), not under this
	// name: GuestDevice is the path written to on the instance.
	Device string
	// GuestDevice is the path of the volume inside the instance (the
	// register block's guest_device wins). Default: Device if it exists
	// there (Xen instances, or udev rules that link it), else the Nitro
	// by-id link of the volume, /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_volXXXX,
	// which names the volume and so can never be another disk.
	GuestDevice string
	// DeviceTimeout is how long the guest device may take to appear after
	// the attachment (default 2 minutes).
	DeviceTimeout time.Duration
	// SSH configures the connection to the instance (via-instance).
	SSH SSH
}

// awsConfig loads the standard chain (env, shared config/profile, IMDS),
// also accepting the seeds' EC2_ACCESS_KEY / EC2_SECRET_KEY.
func (t *EBS) awsConfig(ctx context.Context, region string) (aws.Config, error) {
	opts := []func(*config.LoadOptions) error{config.WithRegion(region),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = 8; o.MaxBackoff = 5 * time.Second })
		})}
	switch {
	case t.Credentials != nil:
		opts = append(opts, config.WithCredentialsProvider(t.Credentials))
	case os.Getenv("AWS_ACCESS_KEY_ID") == "" && os.Getenv("EC2_ACCESS_KEY") != "":
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(os.Getenv("EC2_ACCESS_KEY"), os.Getenv("EC2_SECRET_KEY"), "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return cfg, fmt.Errorf("AWS configuration: %w", err)
	}
	if t.Endpoint != "" {
		cfg.BaseEndpoint = aws.String(t.Endpoint)
	}
	// Fail early and clearly without credentials, instead of at the first
	// signed request.
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		return cfg, fmt.Errorf("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or EC2_ACCESS_KEY and EC2_SECRET_KEY), or AWS_PROFILE: %w", err)
	}
	return cfg, nil
}

// created is what a run made, for cleanup.
type created struct {
	region    string
	snapshots []string
	images    []string
	volumes   []string // via-instance scratch volumes (detached, then deleted)
}

// Register implements register.Target.
func (t *EBS) Register(ctx context.Context, reg plan.Register, art register.Artifact, opt register.Options) ([]catalogue.Registration, error) {
	if err := checkBoot(art); err != nil {
		return nil, err
	}
	if reg.Region == "" {
		reg.Region = os.Getenv("AWS_REGION")
	}
	if reg.Region == "" {
		return nil, errors.New("no region: set region in the register block, -region, or AWS_REGION")
	}
	method := reg.Method
	switch method {
	case "", MethodDirect:
		method = MethodDirect
	case MethodViaInstance:
		if reg.Instance == "" {
			return nil, errors.New("method via-instance needs the id of a running EC2 instance to attach the volume to: set instance in the register block or -instance ID")
		}
	default:
		return nil, fmt.Errorf("unknown method %q (use %q: EBS direct APIs, or %q: write a volume through an instance over SSH)", reg.Method, MethodDirect, MethodViaInstance)
	}
	cfg, err := t.awsConfig(ctx, reg.Region)
	if err != nil {
		return nil, err
	}
	ebsc := ebs.NewFromConfig(cfg)
	ec2c := ec2.NewFromConfig(cfg)
	name := amiName(art, opt, time.Now())
	old, err := checkNames(ctx, cfg, append([]string{reg.Region}, reg.CopyTo...), name, art, opt)
	if err != nil {
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
	done := map[string]*created{reg.Region: {region: reg.Region}}
	ok := false
	defer func() {
		if ok || opt.KeepOnError {
			return
		}
		// A new context: the run's may be canceled already (Ctrl-C).
		// Detaching a scratch volume before deleting it takes a while.
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		for region, c := range done {
			t.cleanup(cctx, cfg, region, c)
		}
	}()

	var snap string
	if method == MethodViaInstance {
		snap, err = t.viaInstance(ctx, ec2c, f, st.Size(), reg, art, name, done[reg.Region])
	} else {
		snap, err = t.upload(ctx, ebsc, f, st.Size(), art, name, done[reg.Region])
	}
	if err != nil {
		return nil, err
	}
	regs, err := t.publish(ctx, cfg, ec2c, snap, name, reg, art, old, done)
	if err != nil {
		return nil, err
	}
	ok = true
	return regs, nil
}

// publish registers the AMI from a completed snapshot in reg.Region, tags
// it, makes it public if asked and copies it to reg.CopyTo, recording what
// it creates in done. Both methods end here.
func (t *EBS) publish(ctx context.Context, cfg aws.Config, ec2c *ec2.Client, snap, name string, reg plan.Register, art register.Artifact, old existing, done map[string]*created) ([]catalogue.Registration, error) {
	progress.Logf("ec2-ebs: %s: snapshot %s complete, registering %s", reg.Region, snap, name)
	if err := old.deregister(ctx, ec2c, reg.Region); err != nil {
		return nil, err
	}
	out, err := ec2c.RegisterImage(ctx, ebsImage(name, snap, reg, art))
	if err != nil {
		return nil, fmt.Errorf("RegisterImage in %s: %w", reg.Region, explain(err))
	}
	ami := aws.ToString(out.ImageId)
	done[reg.Region].images = append(done[reg.Region].images, ami)
	if err := t.finish(ctx, ec2c, ami, snap, reg, art); err != nil {
		return nil, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	regs := []catalogue.Registration{{Cloud: "ec2", Target: plan.TargetEC2EBS, Region: reg.Region, ImageID: ami, SnapshotID: snap, Time: now}}

	copies, err := t.copyTo(ctx, cfg, ami, name, reg, art, plan.TargetEC2EBS, old, done)
	regs = append(regs, copies...)
	if err != nil {
		return nil, err
	}
	return regs, nil
}

// finish tags the AMI (and its snapshot) and makes it public if asked.
func (t *EBS) finish(ctx context.Context, c *ec2.Client, ami, snap string, reg plan.Register, art register.Artifact) error {
	tags := []ec2types.Tag{{Key: aws.String("conpaas:name"), Value: aws.String(art.Name)},
		{Key: aws.String("conpaas:version"), Value: aws.String(art.Version)}, {Key: aws.String("conpaas:md5"), Value: aws.String(art.Sums.MD5)}}
	keys := make([]string, 0, len(reg.Tags))
	for k := range reg.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		tags = append(tags, ec2types.Tag{Key: aws.String(k), Value: aws.String(reg.Tags[k])})
	}
	res := []string{ami}
	if snap != "" {
		res = append(res, snap)
	}
	if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: res, Tags: tags}); err != nil {
		return fmt.Errorf("CreateTags: %w", explain(err))
	}
	if reg.Public {
		_, err := c.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{ImageId: aws.String(ami),
			LaunchPermission: &ec2types.LaunchPermissionModifications{Add: []ec2types.LaunchPermission{{Group: ec2types.PermissionGroupAll}}}})
		if err != nil {
			return fmt.Errorf("make %s public: %w", ami, explain(err))
		}
	}
	return nil
}

// upload writes the image's non-zero blocks into a new snapshot.
func (t *EBS) upload(ctx context.Context, c *ebs.Client, f *os.File, size int64, art register.Artifact, name string, done *created) (string, error) {
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
