package ec2fake

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
)

func client(f *Fake, region string) *ec2.Client {
	return ec2.New(ec2.Options{Region: region, BaseEndpoint: aws.String(f.URL),
		Credentials: credentials.NewStaticCredentialsProvider(f.AccessKey, f.Secret, "")})
}

func fast(o *ec2.VolumeAvailableWaiterOptions) { o.MinDelay = time.Millisecond }

func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// The volume life cycle through the SDK, with AWS's errors for requests
// out of order, and a snapshot of what was written to the backing file.
func TestVolumes(t *testing.T) {
	f := Start()
	defer f.Close()
	f.VolumeDir = t.TempDir()
	ctx := context.Background()
	c := client(f, "eu-west-1")
	in := f.AddInstance(Instance{Region: "eu-west-1", AZ: "eu-west-1b", PublicIP: "198.51.100.4"})
	other := f.AddInstance(Instance{Region: "eu-west-1", AZ: "eu-west-1a"})

	di, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{in.ID}})
	if err != nil {
		t.Fatal(err)
	}
	got := di.Reservations[0].Instances[0]
	if aws.ToString(got.Placement.AvailabilityZone) != "eu-west-1b" || aws.ToString(got.PublicIpAddress) != "198.51.100.4" || got.State.Name != types.InstanceStateNameRunning {
		t.Errorf("instance %+v", got)
	}

	if _, err := c.CreateVolume(ctx, &ec2.CreateVolumeInput{Size: aws.Int32(1)}); code(err) != "MissingParameter" {
		t.Errorf("no AZ: %v", err)
	}
	if _, err := c.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(1)}); code(err) != "InvalidParameterValue" {
		t.Errorf("AZ of another region: %v", err)
	}
	cv, err := c.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("eu-west-1b"), Size: aws.Int32(2), VolumeType: types.VolumeTypeGp3,
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeVolume, Tags: []types.Tag{{Key: aws.String("Name"), Value: aws.String("scratch")}}}}})
	if err != nil || cv.State != types.VolumeStateCreating || aws.ToInt32(cv.Size) != 2 {
		t.Fatalf("%+v %v", cv, err)
	}
	vol := aws.ToString(cv.VolumeId)
	attach := func(instance, dev string) error {
		_, err := c.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(instance), Device: aws.String(dev)})
		return err
	}
	if err := attach(in.ID, "/dev/xvdf"); code(err) != "IncorrectState" {
		t.Errorf("attach while creating: %v", err)
	}
	if err := ec2.NewVolumeAvailableWaiter(c, fast).Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := attach(other.ID, "/dev/xvdf"); code(err) != "InvalidVolume.ZoneMismatch" {
		t.Errorf("other zone: %v", err)
	}
	if err := attach(in.ID, "/dev/xvda"); code(err) != "InvalidParameterValue" {
		t.Errorf("root device: %v", err)
	}
	if err := attach(in.ID, "/dev/sdf"); err != nil {
		t.Fatal(err)
	}
	if err := attach(in.ID, "/dev/sdg"); code(err) != "VolumeInUse" {
		t.Errorf("attach twice: %v", err)
	}
	if _, err := f.AttachedFile(in.ID, "/dev/xvdf"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("attaching, yet the device is there: %v", err)
	}
	dv, err := c.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}})
	if err != nil || dv.Volumes[0].State != types.VolumeStateInUse || dv.Volumes[0].Attachments[0].State != types.VolumeAttachmentStateAttached ||
		aws.ToString(dv.Volumes[0].Attachments[0].InstanceId) != in.ID || aws.ToString(dv.Volumes[0].Tags[0].Value) != "scratch" {
		t.Fatalf("%+v %v", dv, err)
	}
	// The guest writes /dev/xvdf (the same attachment point as /dev/sdf).
	file, err := f.AttachedFile(in.ID, "/dev/xvdf")
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("conpaas!"), 100<<10)
	fh, _ := os.OpenFile(file, os.O_WRONLY, 0)
	fh.WriteAt(data, 5<<20+3)
	fh.Close()
	if _, err := c.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(vol)}); code(err) != "VolumeInUse" {
		t.Errorf("delete attached: %v", err)
	}
	if _, err := c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(other.ID)}); code(err) != "InvalidAttachment.NotFound" {
		t.Errorf("detach from the wrong instance: %v", err)
	}
	if _, err := c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(vol)}); err != nil {
		t.Fatal(err)
	}
	if err := ec2.NewVolumeAvailableWaiter(c, fast).Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(vol)}); code(err) != "IncorrectState" {
		t.Errorf("detach twice: %v", err)
	}

	cs, err := c.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{VolumeId: aws.String(vol), Description: aws.String("d")})
	if err != nil || cs.State != types.SnapshotStatePending || aws.ToString(cs.VolumeId) != vol {
		t.Fatalf("%+v %v", cs, err)
	}
	snap := aws.ToString(cs.SnapshotId)
	if err := ec2.NewSnapshotCompletedWaiter(c, func(o *ec2.SnapshotCompletedWaiterOptions) { o.MinDelay = time.Millisecond }).Wait(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{snap}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 8<<20)
	copy(want[5<<20+3:], data)
	if got := f.SnapshotBytes(snap, 8<<20); !bytes.Equal(got, want) {
		t.Error("the snapshot is not what was written")
	}
	if n := len(f.Snapshots[snap].Blocks); n != 2 { // 800 KiB from 5 MiB + 3 touches blocks 10 and 11
		t.Errorf("%d blocks stored", n)
	}
	if _, err := c.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(vol)}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) || len(f.Volumes) != 0 {
		t.Errorf("deleted volume: %v %v", err, f.Volumes)
	}
	if _, err := c.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}}); code(err) != "InvalidVolume.NotFound" {
		t.Errorf("describe deleted: %v", err)
	}
	// A volume made from the snapshot holds its bytes.
	cv2, err := c.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("eu-west-1a"), SnapshotId: aws.String(snap)})
	if err != nil || aws.ToInt32(cv2.Size) != 2 {
		t.Fatalf("%+v %v", cv2, err)
	}
	fh, _ = os.Open(f.Volumes[aws.ToString(cv2.VolumeId)].File)
	defer fh.Close()
	b := make([]byte, 8<<20)
	fh.ReadAt(b, 0)
	st, _ := fh.Stat()
	if !bytes.Equal(b, want) || st.Size() != 2<<30 {
		t.Error("volume from snapshot differs")
	}
}
