package ec2

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/conpaas/cps/clouds/awsaccess"
	"github.com/conpaas/cps/clouds/ec2/bundle/bundletest"
	"github.com/conpaas/cps/clouds/register"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/plan"
	"github.com/conpaas/cps/test/ec2fake"
	"github.com/conpaas/cps/test/s3server"
)

// s3env is an EC2 fake that reads a real S3 server (versitygw), plus the
// user's and EC2's key pairs.
type s3env struct {
	f         *ec2fake.Fake
	s3        *s3.Client
	user, ec2 bundletest.Pair
	tg        *S3
}

func newS3Env(t *testing.T) *s3env {
	ep, ak, sk := s3server.Start(t)
	e := &s3env{f: ec2fake.Start(), user: bundletest.NewPair(t, "user"), ec2: bundletest.NewPair(t, "ec2")}
	t.Cleanup(e.f.Close)
	e.f.S3 = ec2fake.S3Side{Endpoint: ep, Region: s3server.Region, AccessKey: ak, Secret: sk, EC2Key: e.ec2.Key, UserCert: e.user.Cert}
	e.s3 = s3.New(s3.Options{Region: s3server.Region, BaseEndpoint: aws.String(ep), UsePathStyle: true, Credentials: credentials.NewStaticCredentialsProvider(ak, sk, "")})
	e.tg = &S3{Access: awsaccess.Config{Endpoint: e.f.URL, S3Endpoint: ep, Credentials: credentials.NewStaticCredentialsProvider(e.f.AccessKey, e.f.Secret, ""),
		S3Credentials: credentials.NewStaticCredentialsProvider(ak, sk, "")}, Poll: 10 * time.Millisecond, PartSize: 1 << 20}
	return e
}

func (e *s3env) reg(method, bucket string) plan.Register {
	return plan.Register{Name: "aws-s3", Target: plan.TargetEC2S3, Region: "us-east-1", Bucket: bucket, Method: method,
		Cert: e.user.CertFile, PrivateKey: e.user.KeyFile, EC2Cert: e.ec2.CertFile, AccountID: "1234-5678-9012"}
}

func (e *s3env) keys(t *testing.T, bucket string) []string {
	t.Helper()
	out, err := e.s3.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		if strings.Contains(err.Error(), "NoSuchBucket") {
			return nil
		}
		t.Fatal(err)
	}
	var k []string
	for _, o := range out.Contents {
		k = append(k, aws.ToString(o.Key))
	}
	sort.Strings(k)
	return k
}

// TestRegisterS3Bundle makes an instance-store AMI from a bundle the fake
// reads back from S3: signature, EC2's key, part digests and the image.
func TestRegisterS3Bundle(t *testing.T) {
	e := newS3Env(t)
	file, art := image(t, 24<<20+512)
	cat := filepath.Join(t.TempDir(), "catalogue.json")
	reg := e.reg("bundle", "cps-bundles/conpaas/2.1.0")
	reg.Public, reg.CopyTo = true, []string{"eu-west-1"}
	regs, err := register.PrepareAndRun(context.Background(), e.tg, reg, art, register.Options{}, cat)
	if err != nil {
		t.Fatal(err)
	}
	// The run's own folder: the AMI name and the run's time.
	wantLoc := regexp.MustCompile(`^cps-bundles/conpaas/2\.1\.0/conpaas-2\.1\.0-[0-9a-f]{12}-\d{8}T\d{6}Z/conpaas\.img\.manifest\.xml$`)
	if len(regs) != 2 || !wantLoc.MatchString(regs[0].Location) || regs[0].Target != plan.TargetEC2S3 || regs[1].Region != "eu-west-1" {
		t.Fatalf("registrations %+v", regs)
	}
	loc := regs[0].Location
	want, _ := os.ReadFile(file)
	if got := e.f.S3.Bundles[regs[0].ImageID]; !bytes.Equal(got, want) {
		t.Fatalf("EC2 unbundled %d bytes that differ from the %d-byte image", len(got), len(want))
	}
	img := e.f.Images[regs[0].ImageID]
	if !img.Public || img.Location != loc || img.Tags["conpaas:md5"] != art.Sums.MD5 || img.Arch != "x86_64" {
		t.Errorf("AMI %+v", img)
	}
	dir := strings.TrimPrefix(path.Dir(loc), "cps-bundles/") + "/"
	keys := e.keys(t, "cps-bundles")
	if len(keys) != 3 || keys[0] != dir+"conpaas.img.manifest.xml" || keys[1] != dir+"conpaas.img.part.0" || keys[2] != dir+"conpaas.img.part.1" {
		t.Errorf("bucket holds %v, want the manifest and its two parts in %s", keys, dir)
	}
	c, err := catalogue.Load(cat)
	if err != nil {
		t.Fatal(err)
	}
	a := c.Find("conpaas")
	if a == nil || len(a.Registered) != 2 {
		t.Fatalf("catalogue %+v", a)
	}
	for _, r := range a.Registered {
		if r.Region == "us-east-1" && r.Location != loc {
			t.Errorf("catalogue registration %+v has no bundle location", r)
		}
	}
}

// objects lists a bucket's keys with their ETags.
func (e *s3env) objects(t *testing.T, bucket string) map[string]string {
	t.Helper()
	out, err := e.s3.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, o := range out.Contents {
		m[aws.ToString(o.Key)] = aws.ToString(o.ETag)
	}
	return m
}

// TestRegisterS3Rerun registers the same image and version into the same
// bucket and prefix again. The re-run finds the AMI name taken before
// uploading anything; with -force-new-name or -replace it writes a bundle
// of its own beside the first, whose objects stay exactly as they were
// (the first AMI, still in the catalogue, keeps its bundle).
func TestRegisterS3Rerun(t *testing.T) {
	e := newS3Env(t)
	file, art := image(t, 8<<20)
	want, _ := os.ReadFile(file)
	reg := e.reg("bundle", "cps-rerun/conpaas")
	first, err := register.PrepareAndRun(context.Background(), e.tg, reg, art, register.Options{}, "")
	if err != nil {
		t.Fatal(err)
	}
	before := e.objects(t, "cps-rerun")

	_, err = register.PrepareAndRun(context.Background(), e.tg, reg, art, register.Options{}, "")
	if err == nil || !strings.Contains(err.Error(), "already used in us-east-1 by "+first[0].ImageID) || !strings.Contains(err.Error(), "-force-new-name") {
		t.Fatalf("re-run: %v", err)
	}
	if got := e.objects(t, "cps-rerun"); !reflect.DeepEqual(got, before) {
		t.Fatalf("the failed re-run changed the bucket:\n before %v\n after  %v", before, got)
	}
	time.Sleep(time.Second) // another run, another second: another folder

	for _, opt := range []register.Options{{ForceNewName: true}, {Replace: true}} {
		regs, err := register.PrepareAndRun(context.Background(), e.tg, reg, art, opt, "")
		if err != nil {
			t.Fatal(err)
		}
		if regs[0].Location == first[0].Location || !bytes.Equal(e.f.S3.Bundles[regs[0].ImageID], want) {
			t.Errorf("%+v: the new AMI's bundle %s", opt, regs[0].Location)
		}
		now := e.objects(t, "cps-rerun")
		for k, etag := range before {
			if now[k] != etag {
				t.Errorf("%+v: the first bundle's %s was overwritten or deleted", opt, k)
			}
		}
		time.Sleep(time.Second)
	}
	if e.f.Images[first[0].ImageID] != nil {
		t.Error("-replace did not deregister the first AMI")
	}
}

// TestPutObjectNeverOverwrites: an object that appears between the check
// and the upload is not overwritten (If-None-Match: *, which versitygw
// enforces as S3 does), and not counted as this run's for cleanup.
func TestPutObjectNeverOverwrites(t *testing.T) {
	e := newS3Env(t)
	ctx := context.Background()
	if _, err := e.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("cps-race")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("cps-race"), Key: aws.String("a/x"), Body: strings.NewReader("theirs")}); err != nil {
		t.Fatal(err)
	}
	objs := &s3Created{bucket: "cps-race"}
	err := putObject(ctx, e.s3, "cps-race", "a/x", []byte("ours"), objs)
	if err == nil || !strings.Contains(err.Error(), "was not overwritten") || len(objs.keys) != 0 {
		t.Fatalf("got %v, keys %v", err, objs.keys)
	}
	out, err := e.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("cps-race"), Key: aws.String("a/x")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(out.Body)
	if string(b) != "theirs" {
		t.Errorf("the object now holds %q", b)
	}
}

// TestRegisterS3Import uploads the raw image to a bucket it creates,
// imports it as a snapshot and registers an EBS-backed AMI.
func TestRegisterS3Import(t *testing.T) {
	e := newS3Env(t)
	path, art := image(t, 70<<20)
	regs, err := register.PrepareAndRun(context.Background(), e.tg, e.reg("import", "cps-import/staging"), art, register.Options{}, "")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(path)
	if got := e.f.SnapshotBytes(regs[0].SnapshotID, int64(len(want))); !bytes.Equal(got, want) {
		t.Fatal("imported snapshot differs from the image")
	}
	img := e.f.Images[regs[0].ImageID]
	if img.SnapshotID != regs[0].SnapshotID || img.RootDevice != "/dev/xvda" || img.BootMode != "uefi-preferred" {
		t.Errorf("AMI %+v", img)
	}
	if k := e.keys(t, "cps-import"); len(k) != 0 {
		t.Errorf("the staging object was not deleted: %v", k)
	}
	if e.f.Requests["DescribeImportSnapshotTasks"] < 2 {
		t.Errorf("the import was not waited for (%d polls)", e.f.Requests["DescribeImportSnapshotTasks"])
	}
}

// TestRegisterS3Failures: a clear error and nothing left behind (objects,
// a bucket the run made, AMIs), or everything kept with KeepOnError.
func TestRegisterS3Failures(t *testing.T) {
	e := newS3Env(t)
	_, art := image(t, 12<<20)
	other := bundletest.NewPair(t, "other")
	cases := []struct {
		name string
		edit func(*plan.Register)
		fake func(*ec2fake.Fake)
		keep bool
		want string
	}{
		{name: "no certificate", edit: func(r *plan.Register) { r.Cert = "" }, want: "needs your X.509 certificate"},
		{name: "no EC2 certificate", edit: func(r *plan.Register) { r.EC2Cert = "" }, want: "needs EC2's certificate"},
		{name: "bad account", edit: func(r *plan.Register) { r.AccountID = "12345" }, want: "12-digit AWS account id"},
		{name: "no bucket", edit: func(r *plan.Register) { r.Bucket = "" }, want: "needs a bucket"},
		{name: "unknown method", edit: func(r *plan.Register) { r.Method = "upload" }, want: "method \"upload\" is unknown"},
		{name: "bundle for another EC2 key", edit: func(r *plan.Register) { r.EC2Cert = other.CertFile }, want: "cannot decrypt the bundle key"},
		{name: "signed by a key EC2 does not know", fake: func(f *ec2fake.Fake) { f.S3.UserCert = other.Cert }, want: "signature does not match"},
		{name: "kept on error", fake: func(f *ec2fake.Fake) { f.S3.UserCert = other.Cert }, keep: true, want: "signature does not match"},
		{name: "wrong secret", fake: func(f *ec2fake.Fake) { f.Secret = "other" }, want: "secret key is wrong"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			savedS3, savedSecret := e.f.S3, e.f.Secret
			defer func() { e.f.S3, e.f.Secret = savedS3, savedSecret }()
			if tc.fake != nil {
				tc.fake(e.f)
			}
			bucket := "cps-fail-" + string(rune('a'+i))
			reg := e.reg("bundle", bucket)
			if tc.edit != nil {
				tc.edit(&reg)
			}
			images := len(e.f.Images)
			_, err := register.PrepareAndRun(context.Background(), e.tg, reg, art, register.Options{KeepOnError: tc.keep}, "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if n := len(e.keys(t, bucket)); (n > 0) != tc.keep {
				t.Errorf("%d objects left in %s (keep=%v)", n, bucket, tc.keep)
			}
			if _, err := e.s3.HeadBucket(context.Background(), &s3.HeadBucketInput{Bucket: aws.String(bucket)}); (err == nil) != tc.keep {
				t.Errorf("bucket %s exists: %v (keep=%v)", bucket, err == nil, tc.keep)
			}
			if len(e.f.Images) != images {
				t.Errorf("an AMI was left behind")
			}
		})
	}
}

// TestRegisterS3FailureKeepsOthers: a failed run in a bucket that holds
// other objects deletes what it wrote and nothing else (not the bucket).
func TestRegisterS3FailureKeepsOthers(t *testing.T) {
	e := newS3Env(t)
	ctx := context.Background()
	if _, err := e.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("cps-shared")}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"conpaas/conpaas.img.manifest.xml", "conpaas/conpaas.img.part.0", "other/file"} {
		if _, err := e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("cps-shared"), Key: aws.String(k), Body: strings.NewReader(k)}); err != nil {
			t.Fatal(err)
		}
	}
	before := e.objects(t, "cps-shared")
	e.f.S3.UserCert = bundletest.NewPair(t, "other").Cert // RegisterImage fails after the upload
	_, art := image(t, 8<<20)
	if _, err := register.PrepareAndRun(ctx, e.tg, e.reg("bundle", "cps-shared/conpaas"), art, register.Options{}, ""); err == nil {
		t.Fatal("registered a bundle signed by a key EC2 does not know")
	}
	if got := e.objects(t, "cps-shared"); !reflect.DeepEqual(got, before) {
		t.Errorf("cleanup changed other objects:\n before %v\n after  %v", before, got)
	}
}

// TestRegisterS3Canceled stops a bundle upload midway: the parts already
// uploaded are deleted.
func TestRegisterS3Canceled(t *testing.T) {
	e := newS3Env(t)
	_, art := image(t, 60<<20)
	ctx, cancel := context.WithCancel(context.Background())
	e.tg.Workers = 1
	go func() {
		for len(e.keys(t, "cps-cancel")) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	_, err := register.PrepareAndRun(ctx, e.tg, e.reg("bundle", "cps-cancel"), art, register.Options{}, "")
	if err == nil || ctx.Err() == nil {
		t.Fatalf("got %v, want a canceled run", err)
	}
	if k := e.keys(t, "cps-cancel"); len(k) != 0 {
		t.Errorf("left behind: %v", k)
	}
}

// TestRegisterS3BucketWithoutACLs: a bucket with ACLs disabled (S3's
// default for new buckets since 2023) refuses aws-exec-read with
// AccessControlListNotSupported; the bundle is then uploaded without it.
// versitygw does not enforce object ownership, so a proxy in front of it
// answers as S3 does for that bucket (the request and its signature pass
// through unchanged otherwise).
func TestRegisterS3BucketWithoutACLs(t *testing.T) {
	e := newS3Env(t)
	ctx := context.Background()
	const bucket = "cps-owner-enforced"
	target, _ := url.Parse(e.f.S3.Endpoint)
	rp := httputil.NewSingleHostReverseProxy(target)
	var refused atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.Header.Get("X-Amz-Acl") != "" && strings.HasPrefix(r.URL.Path, "/"+bucket+"/") {
			refused.Add(1)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessControlListNotSupported</Code><Message>The bucket does not allow ACLs</Message></Error>`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	e.tg.Access.S3Endpoint = proxy.URL
	if _, err := e.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	path, art := image(t, 8<<20)
	regs, err := register.PrepareAndRun(ctx, e.tg, e.reg("bundle", bucket+"/b"), art, register.Options{}, "")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(path)
	if !bytes.Equal(e.f.S3.Bundles[regs[0].ImageID], want) {
		t.Fatal("EC2 unbundled other bytes")
	}
	// Parts already in flight may try the ACL too; later ones do not.
	if n := refused.Load(); n < 1 || n > 4 {
		t.Errorf("%d uploads tried the ACL, want 1 to 4 (the parts in flight)", n)
	}
}
