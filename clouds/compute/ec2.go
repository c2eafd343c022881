package compute

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
)

type ec2Cloud struct {
	c   *ec2.Client
	hc  recordingClient
	cfg Config
}

func openEC2(cfg Config, hc recordingClient) (Cloud, error) {
	if cfg.AWS.Region == "" || cfg.AWS.Credentials == nil {
		return nil, errors.New("ec2: region, access key and secret key are required")
	}
	if v, err := cfg.AWS.Credentials.Retrieve(context.Background()); err != nil || v.AccessKeyID == "" || v.SecretAccessKey == "" {
		return nil, errors.New("ec2: region, access key and secret key are required")
	}
	opts := ec2.Options{
		Region:           cfg.AWS.Region,
		Credentials:      aws.NewCredentialsCache(cfg.AWS.Credentials),
		HTTPClient:       hc.Client,
		RetryMaxAttempts: 4,
	}
	if cfg.AWS.Endpoint != "" {
		opts.BaseEndpoint = aws.String(cfg.AWS.Endpoint)
	}
	return &ec2Cloud{c: ec2.New(opts), hc: hc, cfg: cfg}, nil
}

// ec2Err turns API errors into ErrAuth / ErrNotFound where the code says so.
func ec2Err(op string, err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code := ae.ErrorCode()
		switch {
		case code == "AuthFailure" || code == "SignatureDoesNotMatch" || code == "InvalidClientTokenId" || code == "UnauthorizedOperation" || code == "RequestExpired":
			return fmt.Errorf("ec2 %s: %w: %s: %s", op, ErrAuth, code, ae.ErrorMessage())
		case strings.HasSuffix(code, ".NotFound") || strings.HasSuffix(code, ".Malformed"):
			return fmt.Errorf("ec2 %s: %w: %s: %s", op, ErrNotFound, code, ae.ErrorMessage())
		}
	}
	return fmt.Errorf("ec2 %s: %w", op, err)
}

func (e *ec2Cloud) Start(ctx context.Context, req StartRequest) (Instance, error) {
	in := &ec2.RunInstancesInput{
		ImageId:        aws.String(req.ImageID),
		InstanceType:   types.InstanceType(req.InstanceType),
		MinCount:       aws.Int32(1),
		MaxCount:       aws.Int32(1),
		SecurityGroups: []string{req.SecurityGroup},
		KeyName:        aws.String(req.KeyName),
		UserData:       aws.String(base64.StdEncoding.EncodeToString(req.UserData)),
	}
	if req.Token != "" {
		in.ClientToken = aws.String(req.Token)
	}
	tags := []types.Tag{{Key: aws.String("Name"), Value: aws.String(req.Name)}}
	keys := make([]string, 0, len(req.Tags))
	for k := range req.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		tags = append(tags, types.Tag{Key: aws.String(k), Value: aws.String(req.Tags[k])})
	}
	in.TagSpecifications = []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: tags}}
	out, err := e.c.RunInstances(ctx, in)
	if err != nil {
		return Instance{}, ec2Err("RunInstances", err)
	}
	if len(out.Instances) != 1 {
		return Instance{}, fmt.Errorf("ec2 RunInstances returned %d instances, want 1", len(out.Instances))
	}
	return ec2Instance(out.Instances[0]), nil
}

func ec2Instance(i types.Instance) Instance {
	r := Instance{ID: aws.ToString(i.InstanceId), PublicIP: aws.ToString(i.PublicIpAddress), PrivateIP: aws.ToString(i.PrivateIpAddress), Tags: map[string]string{}}
	if i.State != nil {
		r.State = string(i.State.Name)
	}
	for _, t := range i.Tags {
		r.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return r
}

func (e *ec2Cloud) Stop(ctx context.Context, id string) error {
	_, err := e.c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		return ec2Err("TerminateInstances", err)
	}
	return nil
}

func (e *ec2Cloud) Describe(ctx context.Context, id string) (Instance, error) {
	out, err := e.c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		return Instance{}, ec2Err("DescribeInstances", err)
	}
	for _, r := range out.Reservations {
		for _, i := range r.Instances {
			if aws.ToString(i.InstanceId) == id {
				return ec2Instance(i), nil
			}
		}
	}
	return Instance{}, fmt.Errorf("ec2 instance %s: %w", id, ErrNotFound)
}

func (e *ec2Cloud) List(ctx context.Context, tags map[string]string) ([]Instance, error) {
	in := &ec2.DescribeInstancesInput{Filters: []types.Filter{{Name: aws.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped"}}}}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		in.Filters = append(in.Filters, types.Filter{Name: aws.String("tag:" + k), Values: []string{tags[k]}})
	}
	var out []Instance
	p := ec2.NewDescribeInstancesPaginator(e.c, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, ec2Err("DescribeInstances", err)
		}
		for _, r := range page.Reservations {
			for _, i := range r.Instances {
				out = append(out, ec2Instance(i))
			}
		}
	}
	return out, nil
}

// CreateVolume makes a gp3 volume in near's availability zone.
func (e *ec2Cloud) CreateVolume(ctx context.Context, sizeGiB int, name, near string) (string, error) {
	out, err := e.c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{near}})
	if err != nil {
		return "", ec2Err("DescribeInstances", err)
	}
	az := ""
	for _, r := range out.Reservations {
		for _, i := range r.Instances {
			if i.Placement != nil {
				az = aws.ToString(i.Placement.AvailabilityZone)
			}
		}
	}
	if az == "" {
		return "", fmt.Errorf("ec2 instance %s: no availability zone: %w", near, ErrNotFound)
	}
	v, err := e.c.CreateVolume(ctx, &ec2.CreateVolumeInput{
		AvailabilityZone: aws.String(az), Size: aws.Int32(int32(sizeGiB)), VolumeType: types.VolumeTypeGp3,
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeVolume, Tags: []types.Tag{{Key: aws.String("Name"), Value: aws.String(name)}}}},
	})
	if err != nil {
		return "", ec2Err("CreateVolume", err)
	}
	id := aws.ToString(v.VolumeId)
	w := ec2.NewVolumeAvailableWaiter(e.c, func(o *ec2.VolumeAvailableWaiterOptions) { o.MinDelay, o.MaxDelay = time.Second, 10*time.Second })
	if err := w.Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{id}}, 5*time.Minute); err != nil {
		return id, ec2Err("waiting for volume "+id, err)
	}
	return id, nil
}

func (e *ec2Cloud) AttachVolume(ctx context.Context, volume, instance, device string) error {
	if _, err := e.c.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(volume), InstanceId: aws.String(instance), Device: aws.String(device)}); err != nil {
		return ec2Err("AttachVolume", err)
	}
	return nil
}

func (e *ec2Cloud) DetachVolume(ctx context.Context, volume string) error {
	if _, err := e.c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(volume)}); err != nil {
		return ec2Err("DetachVolume", err)
	}
	w := ec2.NewVolumeAvailableWaiter(e.c, func(o *ec2.VolumeAvailableWaiterOptions) { o.MinDelay, o.MaxDelay = time.Second, 10*time.Second })
	if err := w.Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{volume}}, 5*time.Minute); err != nil {
		return ec2Err("waiting for volume "+volume, err)
	}
	return nil
}

func (e *ec2Cloud) DeleteVolume(ctx context.Context, volume string) error {
	if _, err := e.c.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(volume)}); err != nil {
		return ec2Err("DeleteVolume", err)
	}
	return nil
}

func (e *ec2Cloud) Probe(ctx context.Context) (time.Time, error) {
	_, err := e.c.DescribeRegions(ctx, &ec2.DescribeRegionsInput{})
	// The Date header is useful even when the call failed: a skewed clock
	// is the usual reason for an AuthFailure.
	d := e.hc.rec.Last()
	if err != nil {
		return d, ec2Err("DescribeRegions", err)
	}
	return d, nil
}

func (e *ec2Cloud) ImageExists(ctx context.Context, id string) error {
	out, err := e.c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}})
	if err != nil {
		return ec2Err("DescribeImages", err)
	}
	for _, im := range out.Images {
		if aws.ToString(im.ImageId) == id {
			if im.State != "" && im.State != types.ImageStateAvailable {
				return fmt.Errorf("ec2 image %s is %s, not available", id, im.State)
			}
			return nil
		}
	}
	return fmt.Errorf("ec2 image %s: %w", id, ErrNotFound)
}

func (e *ec2Cloud) SecurityGroupRules(ctx context.Context, name string) ([]PortRange, error) {
	out, err := e.c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupNames: []string{name}})
	if err != nil {
		return nil, ec2Err("DescribeSecurityGroups", err)
	}
	var rules []PortRange
	found := false
	for _, g := range out.SecurityGroups {
		if aws.ToString(g.GroupName) != name {
			continue
		}
		found = true
		for _, p := range g.IpPermissions {
			pr := PortRange{Protocol: aws.ToString(p.IpProtocol), From: int(aws.ToInt32(p.FromPort)), To: int(aws.ToInt32(p.ToPort))}
			if pr.Protocol == "-1" {
				pr.From, pr.To = 0, 65535
			}
			rules = append(rules, pr)
		}
	}
	if !found {
		return nil, fmt.Errorf("ec2 security group %s: %w", name, ErrNotFound)
	}
	return rules, nil
}

func (e *ec2Cloud) EnsureSecurityGroup(ctx context.Context, name string, ports []int) error {
	rules, err := e.SecurityGroupRules(ctx, name)
	if errors.Is(err, ErrNotFound) {
		if _, err := e.c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
			GroupName: aws.String(name), Description: aws.String("ConPaaS managers and agents"),
		}); err != nil {
			return ec2Err("CreateSecurityGroup", err)
		}
	} else if err != nil {
		return err
	}
	miss := MissingPorts(rules, ports)
	if len(miss) == 0 {
		return nil
	}
	var perms []types.IpPermission
	for _, p := range miss {
		perms = append(perms, types.IpPermission{
			IpProtocol: aws.String("tcp"), FromPort: aws.Int32(int32(p)), ToPort: aws.Int32(int32(p)),
			IpRanges: []types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}},
		})
	}
	if _, err := e.c.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{
		GroupName: aws.String(name), IpPermissions: perms,
	}); err != nil {
		return ec2Err("AuthorizeSecurityGroupIngress", err)
	}
	return nil
}
