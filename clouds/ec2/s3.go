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

	"github.com/conpaas/cps/clouds/awsaccess"
	"github.com/conpaas/cps/clouds/ec2/bundle"
	"github.com/conpaas/cps/clouds/register"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/internal/progress"
	"github.com/conpaas/cps/plan"
)

func init() {
	register.Add(plan.TargetEC2S3, func(env register.Env) register.Target { return &S3{Access: env.AWS} })
}

// S3 is the ec2-s3 registration target. Method "bundle" (the default, the
// seeds' register-image-ec2-s3.sh) makes an instance-store AMI from an
// ec2-bundle-image compatible bundle uploaded to S3. Method "import" uploads
// the raw image to S3, turns it into an EBS snapshot with ImportSnapshot
// and registers an EBS-backed AMI from it (no EC2 certificate needed).
type S3 struct {
	// Access is how to reach AWS (and S3, and the bundle signing identity).
	Access awsaccess.Config
	// Workers is how many parts are uploaded at once (default 4).
	Workers int
	// Poll is how often an import task is polled (default 10s).
	Poll time.Duration
	// PartSize overrides the bundle part size (tests).
	PartSize int

	set  S3Settings
	keys bundle.Keys
	cfg  aws.Config
	s3   *s3.Client
	objs *s3Created
}

// S3Settings is an ec2-s3 register block.
type S3Settings struct {
	AMISettings
	// Method is "bundle" or "import".
	Method string
	// Bucket and Prefix hold the run's folder.
	Bucket, Prefix string
	// The bundle's signing identity (ec2-bundle-image's -u, -c, -k,
	// --ec2cert); the Access config's values are the defaults.
	AccountID, Cert, PrivateKey, EC2Cert string
}

// s3Created is what a run made in S3, for cleanup.
type s3Created struct {
	bucket        string
	missing       bool // the bucket does not exist yet
	createdBucket bool
	mu            sync.Mutex
	keys          []string
	// inFlight are the keys whose upload ended in an error (a canceled
	// run): the server may still commit such a PUT after the client gave
	// up, even after cleanup's first delete.
	inFlight []string
	noACL    atomic.Bool // the bucket refuses ACLs
}

// add records a key this run uploaded; err is how the upload ended.
func (c *s3Created) add(key string, err error) {
	c.mu.Lock()
	c.keys = append(c.keys, key)
	if err != nil {
		c.inFlight = append(c.inFlight, key)
	}
	c.mu.Unlock()
}

var accountRE = regexp.MustCompile(`^\d{12}$`)

// Accepts implements register.Target.
func (t *S3) Accepts(art register.Artifact) error { return acceptAMI(plan.TargetEC2S3, art) }

// Settings implements register.Target.
func (t *S3) Settings() []string {
	return append([]string{"method", "bucket", "account_id", "cert", "private_key", "ec2_cert"}, amiSettingNames...)
}

// Prepare implements register.Target.
func (t *S3) Prepare(reg plan.Register) error {
	if err := register.Foreign(reg, t.Settings()...); err != nil {
		return err
	}
	bucket, prefix, _ := strings.Cut(strings.Trim(reg.Bucket, "/"), "/")
	t.set = S3Settings{AMISettings: amiSettings(reg, t.Access), Method: cmp.Or(reg.Method, "bundle"), Bucket: bucket, Prefix: prefix,
		AccountID: strings.ReplaceAll(cmp.Or(reg.AccountID, t.Access.AccountID), "-", ""), Cert: cmp.Or(reg.Cert, t.Access.Cert),
		PrivateKey: cmp.Or(reg.PrivateKey, t.Access.PrivateKey), EC2Cert: cmp.Or(reg.EC2Cert, t.Access.EC2Cert)}
	if t.set.Method != "bundle" && t.set.Method != "import" {
		return fmt.Errorf("ec2-s3 method %q is unknown (use \"bundle\" or \"import\")", t.set.Method)
	}
	if bucket == "" {
		return errors.New("ec2-s3 needs a bucket: set bucket in the register block or -bucket (NAME or NAME/PREFIX)")
	}
	if t.set.Method == "bundle" {
		var err error
		if t.keys, err = bundleKeys(t.set); err != nil {
			return err
		}
	}
	return nil
}

// Check implements register.Target: the EC2 credentials and regions, then
// the S3 side (credentials, the bucket's region), before anything is hashed.
func (t *S3) Check(ctx context.Context) error {
	cfg, err := checkAccess(ctx, t.Access, t.set.AMISettings)
	if err != nil {
		return err
	}
	t.cfg = cfg
	t.s3 = s3.NewFromConfig(cfg, func(o *s3.Options) {
		if t.Access.S3Endpoint != "" {
			o.BaseEndpoint, o.UsePathStyle = aws.String(t.Access.S3Endpoint), true
		}
		if t.Access.S3Credentials != nil {
			o.Credentials = t.Access.S3Credentials
		}
	})
	t.objs = &s3Created{bucket: t.set.Bucket}
	return t.checkBucket(ctx, cfg.Region)
}

// Register implements register.Target.
func (t *S3) Register(ctx context.Context, art register.Artifact, opt register.Options) ([]catalogue.Registration, error) {
	if err := checkBoot(art, t.set.AMISettings); err != nil {
		return nil, err
	}
	now := time.Now()
	r := &amiRun{cfg: t.cfg, ec2: ec2.NewFromConfig(t.cfg), set: t.set.AMISettings, art: art, target: plan.TargetEC2S3, name: amiName(art, opt, now)}
	var err error
	if r.old, err = checkNames(ctx, t.cfg, append([]string{r.set.Region}, r.set.CopyTo...), r.name, art, opt); err != nil {
		return nil, err
	}
	// Each run writes under a folder of its own, named after the AMI and
	// the run's time, so no earlier bundle (of this image or another, still
	// registered or not) can be overwritten, and cleanup deletes only what
	// this run wrote.
	folder := path.Join(t.set.Prefix, amiName(art, register.Options{ForceNewName: true}, now))
	if err := t.checkFolder(ctx, folder); err != nil {
		return nil, err
	}
	f, err := os.Open(art.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	r.done = map[string]*created{r.set.Region: {region: r.set.Region}}
	ok := false
	defer func() {
		if ok || opt.KeepOnError {
			return
		}
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for region, c := range r.done {
			(&EBS{}).cleanup(cctx, t.cfg, region, c)
		}
		t.cleanupS3(cctx)
	}()
	if err := t.ensureBucket(ctx, r.set.Region); err != nil {
		return nil, err
	}
	var regs []catalogue.Registration
	switch t.set.Method {
	case "bundle":
		location, err := t.uploadBundle(ctx, f, folder, art)
		if err != nil {
			return nil, err
		}
		in := imageInput(r.name, art)
		in.ImageLocation = aws.String(location)
		in.RootDeviceName = aws.String("/dev/sda1")
		progress.Logf("ec2-s3: %s: registering %s", r.set.Region, r.name)
		regs, err = r.register(ctx, in, "", location)
		if err != nil {
			return nil, err
		}
	case "import":
		snap, err := t.importSnapshot(ctx, r, f, folder)
		if err != nil {
			return nil, err
		}
		progress.Logf("ec2-s3: %s: registering %s", r.set.Region, r.name)
		regs, err = r.register(ctx, ebsImage(r.name, snap, art), snap, "")
		if err != nil {
			return nil, err
		}
	}
	ok = true
	return regs, nil
}

// bundleKeys loads the bundle's keys as ec2-bundle-image takes them.
func bundleKeys(set S3Settings) (bundle.Keys, error) {
	switch {
	case set.Cert == "" || set.PrivateKey == "":
		return bundle.Keys{}, errors.New("an S3-backed AMI bundle needs your X.509 certificate and private key: set cert and private_key in the register block (or EC2_CERT and EC2_PRIVATE_KEY), or use method \"import\"")
	case set.EC2Cert == "":
		return bundle.Keys{}, errors.New("an S3-backed AMI bundle needs EC2's certificate: set ec2_cert to cert-ec2.pem from ec2-ami-tools (for your region's partition), or use method \"import\"")
	case !accountRE.MatchString(set.AccountID):
		return bundle.Keys{}, fmt.Errorf("an S3-backed AMI bundle needs your 12-digit AWS account id (got %q): set account_id or AWS_ACCOUNT_ID", set.AccountID)
	}
	return bundle.LoadKeys(set.Cert, set.PrivateKey, set.EC2Cert)
}

// checkBucket proves the S3 side before anything is hashed or uploaded:
// the credentials (a listing answers with S3's error code, where
// HeadBucket's 403 has no body to tell a wrong secret from a missing
// permission) and the bucket's region (an S3-backed AMI is read from a
// bucket in its own region). A bucket that does not exist is noted for
// ensureBucket.
func (t *S3) checkBucket(ctx context.Context, region string) error {
	objs := t.objs
	_, err := t.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(objs.bucket), Prefix: aws.String(t.set.Prefix), MaxKeys: aws.Int32(1)})
	var nb *s3types.NoSuchBucket
	if errors.As(err, &nb) {
		objs.missing = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("S3 bucket %s: %w", objs.bucket, explainS3(err, objs.bucket))
	}
	loc, err := t.s3.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String(objs.bucket)})
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

// checkFolder makes sure the run's folder is empty.
func (t *S3) checkFolder(ctx context.Context, folder string) error {
	if t.objs.missing {
		return nil
	}
	list, err := t.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(t.objs.bucket), Prefix: aws.String(folder + "/"), MaxKeys: aws.Int32(1)})
	if err != nil {
		return fmt.Errorf("S3 bucket %s: %w", t.objs.bucket, explainS3(err, t.objs.bucket))
	}
	if len(list.Contents) > 0 {
		return fmt.Errorf("s3://%s/%s/ already holds %s; this run would not overwrite it: run again (the folder is named after the time)", t.objs.bucket, folder, aws.ToString(list.Contents[0].Key))
	}
	return nil
}

// ensureBucket creates the bucket checkBucket found missing, as
// ec2-upload-bundle does; a bucket made here is removed again on failure.
func (t *S3) ensureBucket(ctx context.Context, region string) error {
	objs := t.objs
	if !objs.missing {
		return nil
	}
	in := &s3.CreateBucketInput{Bucket: aws.String(objs.bucket)}
	if region != "us-east-1" {
		in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(region)}
	}
	if _, err := t.s3.CreateBucket(ctx, in); err != nil {
		return fmt.Errorf("create S3 bucket %s: %w", objs.bucket, explainS3(err, objs.bucket))
	}
	objs.createdBucket = true
	progress.Logf("ec2-s3: created bucket %s", objs.bucket)
	return nil
}

// uploadBundle bundles the image while uploading its parts (Workers at a
// time), then the manifest; it returns the manifest's location.
func (t *S3) uploadBundle(ctx context.Context, f *os.File, prefix string, art register.Artifact) (string, error) {
	c, bucket, objs := t.s3, t.set.Bucket, t.objs
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
	arch := string(amiArch(art.Arch))
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
	manifest, err := bundle.Write(ctx, r, r.Size(), bundle.Options{Name: filepath.Base(art.Path), Arch: arch, Account: t.set.AccountID,
		ModTime: st.ModTime(), Keys: t.keys, PartSize: t.PartSize}, func(p bundle.Part) error {
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
	objs.add(key, err)
	return err
}

// importSnapshot uploads the raw image (multipart, holes as zeros read from
// no disk), imports it as an EBS snapshot and deletes the staging object.
func (t *S3) importSnapshot(ctx context.Context, run *amiRun, f *os.File, prefix string) (string, error) {
	c, ec2c, bucket, name, art, objs, done := t.s3, run.ec2, t.set.Bucket, run.name, run.art, t.objs, run.done[run.set.Region]
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
	objs.add(key, err)
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
func (t *S3) cleanupS3(ctx context.Context) {
	c, objs := t.s3, t.objs
	for _, k := range objs.keys {
		if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(objs.bucket), Key: aws.String(k)}); err != nil {
			progress.Logf("ec2-s3: cleanup: could not delete s3://%s/%s: %v", objs.bucket, k, err)
		}
	}
	if len(objs.keys) > 0 {
		progress.Logf("ec2-s3: cleanup: deleted %d objects from s3://%s", len(objs.keys), objs.bucket)
	}
	// An interrupted PUT whose body had been sent can land after the
	// delete above: look again for a few seconds and delete what appears.
	for try := 0; try < 10 && len(objs.inFlight) > 0; try++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		for _, k := range objs.inFlight {
			if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(objs.bucket), Key: aws.String(k)}); err != nil {
				continue // not there (yet)
			}
			if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(objs.bucket), Key: aws.String(k)}); err != nil {
				progress.Logf("ec2-s3: cleanup: could not delete s3://%s/%s: %v", objs.bucket, k, err)
			} else {
				progress.Logf("ec2-s3: cleanup: deleted s3://%s/%s, which an interrupted upload wrote after the first cleanup", objs.bucket, k)
			}
		}
	}
	if objs.createdBucket {
		if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(objs.bucket)}); err != nil {
			progress.Logf("ec2-s3: cleanup: could not delete bucket %s: %v", objs.bucket, err)
		}
	}
}
