package ec2

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/conpaas/cps/clouds/ec2/bundle"
	"github.com/conpaas/cps/clouds/register"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/internal/progress"
	"github.com/conpaas/cps/plan"
)

func init() { register.Add(plan.TargetEC2S3, &S3{}) }

// S3 is the ec2-s3 registration target. Method "bundle" (the default, the
// seeds' register-image-ec2-s3.sh) makes an instance-store AMI from an
// ec2-bundle-image compatible bundle uploaded to S3. Method "import" uploads
// the raw image to S3, turns it into an EBS snapshot with ImportSnapshot
// and registers an EBS-backed AMI from it (no EC2 certificate needed).
type S3 struct {
	// Endpoint overrides the EC2 endpoint, S3Endpoint the S3 one (path-style
	// addressing; tests: the fake and a local S3 server).
	Endpoint, S3Endpoint string
	// S3Credentials, if set, are used for S3 instead of the chain (tests
	// whose S3 server has its own keys).
	Credentials, S3Credentials aws.CredentialsProvider
	// Workers is how many parts are uploaded at once (default 4).
	Workers int
	// Poll is how often an import task is polled (default 10s).
	Poll time.Duration
	// PartSize overrides the bundle part size (tests).
	PartSize int
}

// s3Created is what a run made in S3, for cleanup.
type s3Created struct {
	bucket        string
	missing       bool // the bucket does not exist yet
	createdBucket bool
	mu            sync.Mutex
	keys          []string
	noACL         atomic.Bool // the bucket refuses ACLs
}

func (c *s3Created) add(key string) {
	c.mu.Lock()
	c.keys = append(c.keys, key)
	c.mu.Unlock()
}

var accountRE = regexp.MustCompile(`^\d{12}$`)

// Register implements register.Target.
func (t *S3) Register(ctx context.Context, reg plan.Register, art register.Artifact, opt register.Options) ([]catalogue.Registration, error) {
	if err := checkBoot(art); err != nil {
		return nil, err
	}
	if reg.Region == "" {
		reg.Region = os.Getenv("AWS_REGION")
	}
	if reg.Region == "" {
		return nil, errors.New("no region: set region in the register block, -region, or AWS_REGION")
	}
	if reg.Method == "" {
		reg.Method = "bundle"
	}
	if reg.Method != "bundle" && reg.Method != "import" {
		return nil, fmt.Errorf("ec2-s3 method %q is unknown (use \"bundle\" or \"import\")", reg.Method)
	}
	bucket, prefix, _ := strings.Cut(strings.Trim(reg.Bucket, "/"), "/")
	if bucket == "" {
		return nil, errors.New("ec2-s3 needs a bucket: set bucket in the register block or -bucket (NAME or NAME/PREFIX)")
	}
	var keys bundle.Keys
	if reg.Method == "bundle" {
		var err error
		if keys, reg, err = bundleKeys(reg); err != nil {
			return nil, err
		}
	}
	ebs := &EBS{Endpoint: t.Endpoint, Credentials: t.Credentials}
	cfg, err := ebs.awsConfig(ctx, reg.Region)
	if err != nil {
		return nil, err
	}
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if t.S3Endpoint != "" {
			o.BaseEndpoint, o.UsePathStyle = aws.String(t.S3Endpoint), true
		}
		if t.S3Credentials != nil {
			o.Credentials = t.S3Credentials
		}
	})
	ec2c := ec2.NewFromConfig(cfg)
	now := time.Now()
	name := amiName(art, opt, now)
	old, err := checkNames(ctx, cfg, append([]string{reg.Region}, reg.CopyTo...), name, art, opt)
	if err != nil {
		return nil, err
	}
	// Each run writes under a folder of its own, named after the AMI and
	// the run's time, so no earlier bundle (of this image or another, still
	// registered or not) can be overwritten, and cleanup deletes only what
	// this run wrote.
	folder := path.Join(prefix, amiName(art, register.Options{ForceNewName: true}, now))
	objs := &s3Created{bucket: bucket}
	if err := t.checkBucket(ctx, s3c, reg.Region, folder, objs); err != nil {
		return nil, err
	}
	f, err := os.Open(art.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	done := map[string]*created{reg.Region: {region: reg.Region}}
	ok := false
	defer func() {
		if ok || opt.KeepOnError {
			return
		}
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for region, c := range done {
			ebs.cleanup(cctx, cfg, region, c)
		}
		t.cleanupS3(cctx, s3c, objs)
	}()
	if err := t.ensureBucket(ctx, s3c, reg.Region, objs); err != nil {
		return nil, err
	}
	var (
		in       *ec2.RegisterImageInput
		snap     string
		location string
	)
	switch reg.Method {
	case "bundle":
		location, err = t.uploadBundle(ctx, s3c, f, bucket, folder, reg, art, keys, objs)
		if err != nil {
			return nil, err
		}
		in = imageInput(name, reg, art)
		in.ImageLocation = aws.String(location)
		in.RootDeviceName = aws.String("/dev/sda1")
	case "import":
		snap, err = t.importSnapshot(ctx, s3c, ec2c, f, bucket, folder, name, art, objs, done[reg.Region])
		if err != nil {
			return nil, err
		}
		in = ebsImage(name, snap, reg, art)
	}
	progress.Logf("ec2-s3: %s: registering %s", reg.Region, name)
	if err := old.deregister(ctx, ec2c, reg.Region); err != nil {
		return nil, err
	}
	out, err := ec2c.RegisterImage(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("RegisterImage in %s: %w", reg.Region, explain(err))
	}
	ami := aws.ToString(out.ImageId)
	done[reg.Region].images = append(done[reg.Region].images, ami)
	if err := ebs.finish(ctx, ec2c, ami, snap, reg, art); err != nil {
		return nil, err
	}
	regs := []catalogue.Registration{{Cloud: "ec2", Target: plan.TargetEC2S3, Region: reg.Region, ImageID: ami, SnapshotID: snap,
		Location: location, Time: time.Now().UTC().Truncate(time.Second)}}
	copies, err := ebs.copyTo(ctx, cfg, ami, name, reg, art, plan.TargetEC2S3, old, done)
	regs = append(regs, copies...)
	if err != nil {
		return nil, err
	}
	ok = true
	return regs, nil
}

// bundleKeys finds the bundle's keys and account as ec2-bundle-image does:
// the register block, then $EC2_CERT, $EC2_PRIVATE_KEY, $AWS_ACCOUNT_ID and
// EC2's certificate from $EC2_AMITOOL_HOME/etc/ec2/amitools/cert-ec2.pem.
func bundleKeys(reg plan.Register) (bundle.Keys, plan.Register, error) {
	reg.Cert = cmp.Or(reg.Cert, os.Getenv("EC2_CERT"))
	reg.PrivateKey = cmp.Or(reg.PrivateKey, os.Getenv("EC2_PRIVATE_KEY"))
	reg.AccountID = strings.ReplaceAll(cmp.Or(reg.AccountID, os.Getenv("AWS_ACCOUNT_ID")), "-", "")
	if reg.EC2Cert == "" {
		candidates := []string{"/etc/ec2/amitools/cert-ec2.pem"}
		if home := os.Getenv("EC2_AMITOOL_HOME"); home != "" {
			candidates = append([]string{filepath.Join(home, "etc/ec2/amitools/cert-ec2.pem")}, candidates...)
		}
		for _, p := range candidates {
			if _, err := os.Stat(p); err == nil {
				reg.EC2Cert = p
				break
			}
		}
	}
	switch {
	case reg.Cert == "" || reg.PrivateKey == "":
		return bundle.Keys{}, reg, errors.New("an S3-backed AMI bundle needs your X.509 certificate and private key: set cert and private_key in the register block (or EC2_CERT and EC2_PRIVATE_KEY), or use method \"import\"")
	case reg.EC2Cert == "":
		return bundle.Keys{}, reg, errors.New("an S3-backed AMI bundle needs EC2's certificate: set ec2_cert to cert-ec2.pem from ec2-ami-tools (for your region's partition), or use method \"import\"")
	case !accountRE.MatchString(reg.AccountID):
		return bundle.Keys{}, reg, fmt.Errorf("an S3-backed AMI bundle needs your 12-digit AWS account id (got %q): set account_id or AWS_ACCOUNT_ID", reg.AccountID)
	}
	k, err := bundle.LoadKeys(reg.Cert, reg.PrivateKey, reg.EC2Cert)
	return k, reg, err
}

// checkBucket proves the S3 side before anything is uploaded: the
// credentials (a listing answers with S3's error code, where HeadBucket's
// 403 has no body to tell a wrong secret from a missing permission), the
// bucket's region (an S3-backed AMI is read from a bucket in its own
// region), and that the run's folder is empty. A bucket that does not
// exist is noted for ensureBucket.
func (t *S3) checkBucket(ctx context.Context, c *s3.Client, region, folder string, objs *s3Created) error {
	list, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(objs.bucket), Prefix: aws.String(folder + "/"), MaxKeys: aws.Int32(1)})
	var nb *s3types.NoSuchBucket
	if errors.As(err, &nb) {
		objs.missing = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("S3 bucket %s: %w", objs.bucket, explainS3(err, objs.bucket))
	}
	if len(list.Contents) > 0 {
		return fmt.Errorf("s3://%s/%s/ already holds %s; this run would not overwrite it: run again (the folder is named after the time)", objs.bucket, folder, aws.ToString(list.Contents[0].Key))
	}
	loc, err := c.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String(objs.bucket)})
	if err != nil {
		return fmt.Errorf("S3 bucket %s: %w", objs.bucket, explainS3(err, objs.bucket))
	}
	// S3 answers an empty constraint for us-east-1 and "EU" for the
	// oldest eu-west-1 buckets.
	got := cmp.Or(string(loc.LocationConstraint), "us-east-1")
	if got == "EU" {
		got = "eu-west-1"
	}
	if got != region {
		return fmt.Errorf("S3 bucket %s is in %s but the AMI is registered in %s: EC2 reads a bundle from a bucket in the AMI's region; use a bucket in %s", objs.bucket, got, region, region)
	}
	return nil
}

// ensureBucket creates the bucket checkBucket found missing, as
// ec2-upload-bundle does; a bucket made here is removed again on failure.
func (t *S3) ensureBucket(ctx context.Context, c *s3.Client, region string, objs *s3Created) error {
	if !objs.missing {
		return nil
	}
	in := &s3.CreateBucketInput{Bucket: aws.String(objs.bucket)}
	if region != "us-east-1" {
		in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(region)}
	}
	if _, err := c.CreateBucket(ctx, in); err != nil {
		return fmt.Errorf("create S3 bucket %s: %w", objs.bucket, explainS3(err, objs.bucket))
	}
	objs.createdBucket = true
	progress.Logf("ec2-s3: created bucket %s", objs.bucket)
	return nil
}

// uploadBundle bundles the image while uploading its parts (Workers at a
// time), then the manifest; it returns the manifest's location.
func (t *S3) uploadBundle(ctx context.Context, c *s3.Client, f *os.File, bucket, prefix string, reg plan.Register, art register.Artifact, keys bundle.Keys, objs *s3Created) (string, error) {
	r, err := sparse.NewReader(ctx, f)
	if err != nil {
		return "", err
	}
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	bar := progress.New("bundle "+filepath.Base(art.Path), r.Size())
	defer bar.Finish()
	r.OnRead = bar.Add64
	arch := "x86_64"
	if art.Arch == "arm64" || reg.Architecture == "arm64" {
		arch = "arm64"
	}
	workers := t.Workers
	if workers <= 0 {
		workers = 4
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	parts := make(chan bundle.Part, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range parts {
				key := path.Join(prefix, p.Name)
				err := putObject(ctx, c, bucket, key, p.Data, objs)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("upload %s to s3://%s: %w", p.Name, bucket, explain(err))
					}
					mu.Unlock()
					cancel()
				}
			}
		}()
	}
	failed := func() error {
		mu.Lock()
		defer mu.Unlock()
		return first
	}
	manifest, err := bundle.Write(ctx, r, r.Size(), bundle.Options{Name: filepath.Base(art.Path), Arch: arch, Account: reg.AccountID,
		ModTime: st.ModTime(), Keys: keys, PartSize: t.PartSize}, func(p bundle.Part) error {
		if err := failed(); err != nil {
			return err
		}
		select {
		case parts <- p:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(parts)
	wg.Wait()
	if err := failed(); err != nil {
		return "", err
	}
	if err != nil {
		return "", err
	}
	key := path.Join(prefix, bundle.ManifestName(filepath.Base(art.Path)))
	if err := putObject(ctx, c, bucket, key, manifest, objs); err != nil {
		return "", fmt.Errorf("upload the bundle manifest to s3://%s/%s: %w", bucket, key, explain(err))
	}
	progress.Logf("ec2-s3: bundle uploaded to s3://%s/%s", bucket, key)
	return bucket + "/" + key, nil
}

// putObject uploads one bundle file readable by EC2: with the canned ACL
// aws-exec-read, as ec2-upload-bundle sets, unless the bucket has ACLs
// disabled (S3's default for new buckets since 2023), where access is the
// bucket policy's business and the ACL would be refused.
func putObject(ctx context.Context, c *s3.Client, bucket, key string, data []byte, objs *s3Created) error {
	// If-None-Match: * makes S3 refuse to overwrite an object that exists
	// (412), whoever wrote it since checkBucket looked.
	in := &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), IfNoneMatch: aws.String("*"),
		Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))), ChecksumAlgorithm: s3types.ChecksumAlgorithmSha256}
	if !objs.noACL.Load() {
		in.ACL = s3types.ObjectCannedACLAwsExecRead
	}
	_, err := c.PutObject(ctx, in)
	var ae smithy.APIError
	if err != nil && in.ACL != "" && errors.As(err, &ae) && ae.ErrorCode() == "AccessControlListNotSupported" {
		if !objs.noACL.Swap(true) {
			progress.Logf("ec2-s3: bucket %s has ACLs disabled; uploading without aws-exec-read (EC2 reads the bundle through the bucket policy)", bucket)
		}
		in.ACL = ""
		in.Body = bytes.NewReader(data)
		_, err = c.PutObject(ctx, in)
	}
	if errors.As(err, &ae) && ae.ErrorCode() == "PreconditionFailed" {
		return fmt.Errorf("s3://%s/%s appeared during this run (someone else wrote it); it was not overwritten", bucket, key)
	}
	// Written, or lost in transit: either way the key was free when the
	// run began, so it is this run's to clean up.
	objs.add(key)
	return err
}

// importSnapshot uploads the raw image (multipart, holes as zeros read from
// no disk), imports it as an EBS snapshot and deletes the staging object.
func (t *S3) importSnapshot(ctx context.Context, c *s3.Client, ec2c *ec2.Client, f *os.File, bucket, prefix, name string, art register.Artifact, objs *s3Created, done *created) (string, error) {
	r, err := sparse.NewReader(ctx, f)
	if err != nil {
		return "", err
	}
	bar := progress.New("s3 "+filepath.Base(art.Path), r.Size())
	r.OnRead = bar.Add64
	key := path.Join(prefix, filepath.Base(art.Path))
	tm := transfermanager.New(c, func(o *transfermanager.Options) { o.PartSizeBytes = 64 << 20; o.Concurrency = 4 })
	_, err = tm.UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: r,
		IfNoneMatch: aws.String("*"), ChecksumAlgorithm: tmtypes.ChecksumAlgorithmSha256})
	bar.Finish()
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "PreconditionFailed" {
		return "", fmt.Errorf("s3://%s/%s appeared during this run (someone else wrote it); it was not overwritten", bucket, key)
	}
	objs.add(key)
	if err != nil {
		return "", fmt.Errorf("upload %s to s3://%s/%s: %w", art.Path, bucket, key, explainS3(err, bucket))
	}
	imp, err := ec2c.ImportSnapshot(ctx, &ec2.ImportSnapshotInput{Description: aws.String(name),
		DiskContainer: &ec2types.SnapshotDiskContainer{Format: aws.String("RAW"), Description: aws.String(name),
			UserBucket: &ec2types.UserBucket{S3Bucket: aws.String(bucket), S3Key: aws.String(key)}}})
	if err != nil {
		return "", fmt.Errorf("ImportSnapshot: %w", explain(err))
	}
	task := aws.ToString(imp.ImportTaskId)
	poll := t.Poll
	if poll <= 0 {
		poll = 10 * time.Second
	}
	var snap string
	for snap == "" {
		select {
		case <-ctx.Done():
			// An import cannot be deleted before it ends, only canceled.
			cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			ec2c.CancelImportTask(cctx, &ec2.CancelImportTaskInput{ImportTaskId: aws.String(task)})
			cancel()
			return "", ctx.Err()
		case <-time.After(poll):
		}
		d, err := ec2c.DescribeImportSnapshotTasks(ctx, &ec2.DescribeImportSnapshotTasksInput{ImportTaskIds: []string{task}})
		if err != nil {
			return "", fmt.Errorf("DescribeImportSnapshotTasks %s: %w", task, explain(err))
		}
		if len(d.ImportSnapshotTasks) != 1 || d.ImportSnapshotTasks[0].SnapshotTaskDetail == nil {
			return "", fmt.Errorf("import task %s disappeared", task)
		}
		det := d.ImportSnapshotTasks[0].SnapshotTaskDetail
		switch aws.ToString(det.Status) {
		case "completed":
			snap = aws.ToString(det.SnapshotId)
			done.snapshots = append(done.snapshots, snap)
		case "deleted", "deleting", "cancelled", "canceled":
			return "", fmt.Errorf("import task %s failed: %s", task, aws.ToString(det.StatusMessage))
		default:
			progress.Logf("ec2-s3: import %s: %s %s%%", task, aws.ToString(det.StatusMessage), aws.ToString(det.Progress))
		}
	}
	// The staging object is not needed once the snapshot exists.
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
		progress.Logf("ec2-s3: could not delete the staging object s3://%s/%s: %v", bucket, key, err)
	}
	progress.Logf("ec2-s3: imported %s as snapshot %s", key, snap)
	return snap, nil
}

// cleanupS3 deletes the objects a failed run uploaded, and the bucket if the
// run created it.
func (t *S3) cleanupS3(ctx context.Context, c *s3.Client, objs *s3Created) {
	for _, k := range objs.keys {
		if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(objs.bucket), Key: aws.String(k)}); err != nil {
			progress.Logf("ec2-s3: cleanup: could not delete s3://%s/%s: %v", objs.bucket, k, err)
		}
	}
	if len(objs.keys) > 0 {
		progress.Logf("ec2-s3: cleanup: deleted %d objects from s3://%s", len(objs.keys), objs.bucket)
	}
	if objs.createdBucket {
		if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(objs.bucket)}); err != nil {
			progress.Logf("ec2-s3: cleanup: could not delete bucket %s: %v", objs.bucket, err)
		}
	}
}
