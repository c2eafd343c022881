package ec2

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/conpaas/cps/clouds/awsaccess"
	"github.com/conpaas/cps/clouds/register"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/plan"
	"github.com/conpaas/cps/test/ec2fake"
)

// image makes a sparse raw image with data in a few places (one block
// written with zeros, which must not be uploaded).
func image(t *testing.T, size int64) (string, register.Artifact) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "conpaas.img")
	f, _ := os.Create(p)
	f.Truncate(size)
	for _, off := range []int64{0, 3<<20 + 100, 1 << 30, size - 1000} {
		if off >= size {
			continue
		}
		b := make([]byte, 700<<10)
		rand.Read(b)
		if off+int64(len(b)) > size {
			b = b[:size-off]
		}
		f.WriteAt(b, off)
	}
	if size > 101<<20 {
		f.WriteAt(make([]byte, BlockSize), 100<<20)
	}
	f.Close()
	sums, err := checksum.File(context.Background(), p, checksum.Options{Algos: []checksum.Algo{checksum.MD5, checksum.SHA256}})
	if err != nil {
		t.Fatal(err)
	}
	return p, register.Artifact{Path: p, Name: "conpaas", Version: "2.1.0", Kind: "raw", Arch: "amd64", Sums: sums, Boot: catalogue.BootModes{catalogue.BootBIOS, catalogue.BootUEFI}}
}

func target(f *ec2fake.Fake, secret string) *EBS {
	return &EBS{Access: awsaccess.Config{Endpoint: f.URL, Credentials: credentials.NewStaticCredentialsProvider(f.AccessKey, secret, "")}}
}

func TestRegisterEBS(t *testing.T) {
	f := ec2fake.Start()
	defer f.Close()
	size := int64(2<<30 + 3<<20)
	path, art := image(t, size)
	cat := filepath.Join(t.TempDir(), "catalogue.json")
	reg := plan.Register{Name: "aws", Target: plan.TargetEC2EBS, Region: "us-east-1", CopyTo: []string{"eu-west-1", "sa-east-1"},
		Public: true, Tags: map[string]string{"project": "conpaas"}}
	regs, err := register.PrepareAndRun(context.Background(), target(f, f.Secret), reg, art, register.Options{}, cat)
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 3 || regs[0].Region != "us-east-1" || regs[1].Region != "eu-west-1" || regs[0].SnapshotID == "" {
		t.Fatalf("registrations %+v", regs)
	}
	// The snapshot holds exactly the image's bytes.
	want, _ := os.ReadFile(path)
	if got := f.SnapshotBytes(regs[0].SnapshotID, size); !bytes.Equal(got, want) {
		t.Error("snapshot content differs from the image")
	}
	// Only data blocks were sent: 4 extents of 700 KiB touch at most 2
	// blocks each; the zero block and the holes are not sent.
	if n := f.Requests["PutSnapshotBlock"]; n == 0 || n > 8 {
		t.Errorf("%d blocks sent", n)
	}
	img := f.Images[regs[0].ImageID]
	if img == nil || !img.Public || !img.ENA || img.RootDevice != "/dev/xvda" || img.Arch != "x86_64" || img.BootMode != "uefi-preferred" || img.Tags["project"] != "conpaas" || img.Tags["conpaas:md5"] != art.Sums.MD5 {
		t.Errorf("AMI %+v", img)
	}
	c, _ := catalogue.Load(cat)
	a := c.Find("conpaas")
	if a == nil || len(a.Registered) != 3 || a.Registered[0].ImageID == "" {
		t.Errorf("catalogue %+v", a)
	}
}

// TestRegisterEBSRerun: registering the same image again finds the AMI
// name taken before uploading anything and says what to do; -force-new-name
// registers a second AMI, -replace deregisters the first and takes its name.
func TestRegisterEBSRerun(t *testing.T) {
	f := ec2fake.Start()
	defer f.Close()
	_, art := image(t, 64<<20)
	tg := target(f, f.Secret)
	reg := plan.Register{Target: plan.TargetEC2EBS, Region: "us-east-1", CopyTo: []string{"eu-west-1"}}
	first, err := register.PrepareAndRun(context.Background(), tg, reg, art, register.Options{}, "")
	if err != nil {
		t.Fatal(err)
	}
	blocks, snaps := f.Requests["PutSnapshotBlock"], f.Requests["StartSnapshot"]

	_, err = register.PrepareAndRun(context.Background(), tg, reg, art, register.Options{}, "")
	for _, want := range []string{"already used in us-east-1 by " + first[0].ImageID, "this very image", "-replace", "-force-new-name", "nothing was uploaded"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("re-run: %v, want an error saying %q", err, want)
		}
	}
	if f.Requests["PutSnapshotBlock"] != blocks || f.Requests["StartSnapshot"] != snaps {
		t.Errorf("the re-run uploaded %d blocks before failing", f.Requests["PutSnapshotBlock"]-blocks)
	}
	// A name taken only in a region the AMI is copied to is found too.
	f.AddImage("sa-east-1", "ami-0000000000000aaaa", f.Images[first[0].ImageID].Name)
	if _, err := register.PrepareAndRun(context.Background(), tg, plan.Register{Region: "us-west-2", CopyTo: []string{"sa-east-1"}}, art, register.Options{}, ""); err == nil || !strings.Contains(err.Error(), "already used in sa-east-1") {
		t.Errorf("name taken in a copy region: %v", err)
	}

	second, err := register.PrepareAndRun(context.Background(), tg, reg, art, register.Options{ForceNewName: true}, "")
	if err != nil {
		t.Fatal(err)
	}
	n1, n2 := f.Images[first[0].ImageID].Name, f.Images[second[0].ImageID].Name
	if !strings.HasPrefix(n2, n1+"-") || f.Images[first[0].ImageID].State != "available" {
		t.Errorf("-force-new-name: %q beside %q", n2, n1)
	}

	third, err := register.PrepareAndRun(context.Background(), tg, reg, art, register.Options{Replace: true}, "")
	if err != nil {
		t.Fatal(err)
	}
	if f.Images[first[0].ImageID] != nil || f.Images[first[1].ImageID] != nil {
		t.Error("-replace left the old AMI or its copy registered")
	}
	if img := f.Images[third[0].ImageID]; img == nil || img.Name != n1 {
		t.Errorf("-replace: the new AMI is %+v, want the name %s", img, n1)
	}
	if f.Snapshots[first[0].SnapshotID] == nil {
		t.Error("-replace deleted the old AMI's snapshot")
	}
}

func TestRegisterEBSFailures(t *testing.T) {
	_, art := image(t, 64<<20)
	cases := []struct {
		name   string
		setup  func(f *ec2fake.Fake) *EBS
		region string
		want   string
	}{
		{"wrong secret", func(f *ec2fake.Fake) *EBS { return target(f, "not-the-secret") }, "us-east-1", "secret key is wrong"},
		{"unknown region", func(f *ec2fake.Fake) *EBS { return target(f, f.Secret) }, "mars-north-1", "not a valid region"},
		{"failed block", func(f *ec2fake.Fake) *EBS { f.FailPut = 2; return target(f, f.Secret) }, "us-east-1", "PutSnapshotBlock"},
		{"unreachable", func(f *ec2fake.Fake) *EBS {
			return &EBS{Access: awsaccess.Config{Endpoint: "http://127.0.0.1:9", Credentials: credentials.NewStaticCredentialsProvider("a", "b", "")}}
		}, "us-east-1", "cannot reach"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := ec2fake.Start()
			defer f.Close()
			tg := tc.setup(f)
			tg.Workers = 1
			cat := filepath.Join(t.TempDir(), "catalogue.json")
			_, err := register.PrepareAndRun(context.Background(), tg, plan.Register{Target: plan.TargetEC2EBS, Region: tc.region}, art, register.Options{}, cat)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if len(f.Snapshots) != 0 || len(f.Images) != 0 {
				t.Errorf("cleanup left %d snapshots, %d images", len(f.Snapshots), len(f.Images))
			}
			if _, err := os.Stat(cat); err == nil {
				t.Error("a failed registration wrote the catalogue")
			}
		})
	}
}

// Ctrl-C in the middle of the upload: the snapshot is deleted.
func TestRegisterEBSCanceled(t *testing.T) {
	f := ec2fake.Start()
	defer f.Close()
	_, art := image(t, 2<<30)
	ctx, cancel := context.WithCancel(context.Background())
	tg := target(f, f.Secret)
	tg.Workers = 1
	go func() {
		for {
			f.Mu().Lock()
			n := f.Requests["PutSnapshotBlock"]
			f.Mu().Unlock()
			if n >= 1 {
				cancel()
				return
			}
		}
	}()
	_, err := register.PrepareAndRun(ctx, tg, plan.Register{Region: "us-east-1"}, art, register.Options{}, "")
	if err == nil {
		t.Fatal("a canceled upload succeeded")
	}
	if len(f.Snapshots) != 0 {
		t.Errorf("cancel left %d snapshots", len(f.Snapshots))
	}
}

// Throttling (429/503 on every 3rd request) is retried to success.
func TestRegisterEBSThrottled(t *testing.T) {
	f := ec2fake.Start()
	defer f.Close()
	f.Throttle = 3
	_, art := image(t, 64<<20)
	regs, err := register.PrepareAndRun(context.Background(), target(f, f.Secret), plan.Register{Target: plan.TargetEC2EBS, Region: "eu-west-1"}, art, register.Options{}, "")
	if err != nil || len(regs) != 1 {
		t.Fatalf("%v %v", regs, err)
	}
}

func TestNoCredentials(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("EC2_ACCESS_KEY", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	_, art := image(t, 1<<20)
	_, err := register.PrepareAndRun(context.Background(), &EBS{Access: awsaccess.Config{Endpoint: "http://127.0.0.1:9"}}, plan.Register{Region: "us-east-1"}, art, register.Options{}, "")
	if err == nil || !strings.Contains(err.Error(), "no AWS credentials") {
		t.Fatalf("err = %v", err)
	}
	_ = aws.String
}
