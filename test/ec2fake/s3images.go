package ec2fake

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/conpaas/cps/clouds/ec2/bundle"
)

// S3Side is what the fake needs to read S3 as EC2 does: RegisterImage with
// an ImageLocation fetches the bundle manifest and parts, checks the
// signature with the account's certificate, decrypts the bundle with EC2's
// key and checks every digest; ImportSnapshot reads the object into a new
// snapshot. The objects live in a real S3 server (test/s3server).
type S3Side struct {
	Endpoint, Region, AccessKey, Secret string
	EC2Key                              *rsa.PrivateKey   // EC2's private key (bundles are encrypted for its certificate)
	UserCert                            *x509.Certificate // the certificate registered with the account
	// Bundles holds each instance-store image's unbundled bytes by AMI id.
	Bundles map[string][]byte
	imports map[string]*importTask
}

type importTask struct {
	id, region, bucket, key, desc, status, message, snap string
	size                                                 int64
	polls                                                int
}

func init() {
	actions["ImportSnapshot"] = (*Fake).importSnapshot
	actions["DescribeImportSnapshotTasks"] = (*Fake).describeImportSnapshotTasks
	actions["CancelImportTask"] = (*Fake).cancelImportTask
}

func (f *Fake) s3client() (*s3.Client, *apiError) {
	if f.S3.Endpoint == "" {
		return nil, &apiError{400, "InvalidParameter", "the fake has no S3 endpoint (set Fake.S3)"}
	}
	region := f.S3.Region
	if region == "" {
		region = "us-east-1"
	}
	return s3.New(s3.Options{Region: region, BaseEndpoint: aws.String(f.S3.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(f.S3.AccessKey, f.S3.Secret, "")}), nil
}

func getObject(c *s3.Client, bucket, key string) (io.ReadCloser, error) {
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	return out.Body, nil
}

// registerBundle is RegisterImage with an ImageLocation (bucket/key of a
// bundle manifest): an instance-store AMI.
func (f *Fake) registerBundle(q url.Values, region string) (string, *apiError) {
	loc := q.Get("ImageLocation")
	bucket, key, ok := strings.Cut(loc, "/")
	if !ok || q.Get("Name") == "" {
		return "", &apiError{400, "InvalidParameterValue", "ImageLocation must be bucket/manifest-key and Name is required"}
	}
	if len(q.Get("BlockDeviceMapping.1.Ebs.SnapshotId")) > 0 {
		return "", &apiError{400, "InvalidParameterCombination", "an instance-store AMI has no EBS root snapshot"}
	}
	for _, img := range f.Images {
		if img.Region == region && img.Name == q.Get("Name") && img.State != "deregistered" {
			return "", &apiError{400, "InvalidAMIName.Duplicate", "AMI name " + img.Name + " is already in use by AMI " + img.ID}
		}
	}
	c, aerr := f.s3client()
	if aerr != nil {
		return "", aerr
	}
	rc, err := getObject(c, bucket, key)
	if err != nil {
		return "", &apiError{400, "InvalidManifest", "cannot read the manifest " + loc + ": " + err.Error()}
	}
	doc, _ := io.ReadAll(rc)
	rc.Close()
	m, err := bundle.ParseManifest(doc, f.S3.UserCert)
	if err != nil {
		return "", &apiError{400, "InvalidManifest", err.Error()}
	}
	if want := archName(q.Get("Architecture")); want != "" && want != m.Arch {
		return "", &apiError{400, "InvalidParameterValue", "Architecture " + q.Get("Architecture") + " does not match the manifest's " + m.Arch}
	}
	dir := key[:strings.LastIndex(key, "/")+1]
	var img bytes.Buffer
	err = bundle.Unbundle(context.Background(), m, f.S3.EC2Key, func(name string) (io.ReadCloser, error) {
		return getObject(c, bucket, dir+name)
	}, &img)
	if err != nil {
		return "", &apiError{400, "InvalidManifest", "the bundle does not unbundle: " + err.Error()}
	}
	ami := &Image{ID: f.id("ami"), Region: region, Name: q.Get("Name"), State: "available", Arch: q.Get("Architecture"),
		RootDevice: q.Get("RootDeviceName"), BootMode: q.Get("BootMode"), Virt: q.Get("VirtualizationType"),
		ENA: q.Get("EnaSupport") == "true", Tags: map[string]string{}, Location: loc}
	f.Images[ami.ID] = ami
	if f.S3.Bundles == nil {
		f.S3.Bundles = map[string][]byte{}
	}
	f.S3.Bundles[ami.ID] = img.Bytes()
	return "<imageId>" + ami.ID + "</imageId>", nil
}

func archName(a string) string {
	switch a {
	case "", "x86_64", "arm64", "i386":
		return a
	}
	return "?" + a
}

func (f *Fake) importSnapshot(q url.Values, region string) (string, *apiError) {
	format, bucket, key := q.Get("DiskContainer.Format"), q.Get("DiskContainer.UserBucket.S3Bucket"), q.Get("DiskContainer.UserBucket.S3Key")
	switch {
	case bucket == "" || key == "":
		return "", &apiError{400, "MissingParameter", "DiskContainer.UserBucket.S3Bucket and S3Key are required"}
	case format != "RAW" && format != "VHD" && format != "VMDK":
		return "", &apiError{400, "InvalidParameter", "DiskContainer.Format must be RAW, VHD or VMDK"}
	case format != "RAW":
		return "", &apiError{400, "InvalidParameter", "this fake imports RAW only"}
	}
	if f.S3.imports == nil {
		f.S3.imports = map[string]*importTask{}
	}
	task := &importTask{id: f.id("import-snap"), region: region, bucket: bucket, key: key, desc: q.Get("Description"), status: "active", message: "pending"}
	c, aerr := f.s3client()
	if aerr != nil {
		return "", aerr
	}
	// Like AWS, a bad object fails the task, not the call.
	rc, err := getObject(c, bucket, key)
	if err != nil {
		task.status, task.message = "deleted", "ClientError: Unable to read the disk image s3://"+bucket+"/"+key+": "+err.Error()
	} else {
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || len(data) == 0 {
			task.status, task.message = "deleted", "ClientError: Disk validation failed [empty or unreadable image]"
		} else {
			task.size = int64(len(data))
			s := &Snapshot{ID: f.id("snap"), Region: region, Status: "completed", Description: "Created by AWS-VMImport service for " + task.id,
				VolumeGiB: (task.size + 1<<30 - 1) >> 30, Blocks: map[int32][]byte{}, Sums: map[int32][]byte{}, Tags: map[string]string{}}
			for off := int64(0); off < task.size; off += BlockSize {
				b := make([]byte, BlockSize)
				copy(b, data[off:])
				if !bytes.Equal(b, make([]byte, BlockSize)) {
					s.Blocks[int32(off/BlockSize)] = b
				}
			}
			f.Snapshots[s.ID] = s
			task.snap = s.ID
		}
	}
	f.S3.imports[task.id] = task
	return "<importTaskId>" + task.id + "</importTaskId>" + taskDetail(task), nil
}

func taskDetail(t *importTask) string {
	progress := map[int]string{0: "0", 1: "57"}[t.polls]
	snap := ""
	if t.status == "completed" {
		snap = "<snapshotId>" + t.snap + "</snapshotId>"
	}
	return fmt.Sprintf("<snapshotTaskDetail><description>%s</description><diskImageSize>%d</diskImageSize><format>RAW</format><progress>%s</progress>%s<status>%s</status><statusMessage>%s</statusMessage><userBucket><s3Bucket>%s</s3Bucket><s3Key>%s</s3Key></userBucket></snapshotTaskDetail>",
		xmlEsc(t.desc), t.size, progress, snap, t.status, xmlEsc(t.message), xmlEsc(t.bucket), xmlEsc(t.key))
}

// describeImportSnapshotTasks advances a task one step per poll (pending,
// converting, completed), as waiting on a real import looks.
func (f *Fake) describeImportSnapshotTasks(q url.Values, region string) (string, *apiError) {
	var b strings.Builder
	b.WriteString("<importSnapshotTaskSet>")
	for i := 1; q.Get(fmt.Sprintf("ImportTaskId.%d", i)) != ""; i++ {
		id := q.Get(fmt.Sprintf("ImportTaskId.%d", i))
		t := f.S3.imports[id]
		if t == nil || t.region != region {
			return "", &apiError{400, "InvalidConversionTaskId.Malformed", "The import task '" + id + "' does not exist"}
		}
		if t.status == "active" {
			t.polls++
			switch t.polls {
			case 1:
				t.message = "converting"
			default:
				t.status, t.message = "completed", "completed"
			}
		}
		fmt.Fprintf(&b, "<item><importTaskId>%s</importTaskId>%s</item>", t.id, taskDetail(t))
	}
	b.WriteString("</importSnapshotTaskSet>")
	return b.String(), nil
}

func (f *Fake) cancelImportTask(q url.Values, region string) (string, *apiError) {
	t := f.S3.imports[q.Get("ImportTaskId")]
	if t == nil {
		return "", &apiError{400, "InvalidConversionTaskId.Malformed", "The import task '" + q.Get("ImportTaskId") + "' does not exist"}
	}
	prev := t.status
	t.status, t.message = "deleted", "canceled by the user"
	if t.snap != "" {
		delete(f.Snapshots, t.snap)
	}
	return fmt.Sprintf("<importTaskId>%s</importTaskId><previousState>%s</previousState><state>deleting</state>", t.id, prev), nil
}
