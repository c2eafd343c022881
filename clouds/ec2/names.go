package ec2

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/conpaas/cps/clouds/register"
	"github.com/conpaas/cps/internal/progress"
)

// amiName is the AMI's name: NAME-VERSION-SHA (the first 12 hex digits of
// the image's SHA256), so the same bytes always get the same name; with
// ForceNewName the run's UTC time is appended, making another name.
func amiName(art register.Artifact, opt register.Options, now time.Time) string {
	name := fmt.Sprintf("%s-%s-%s", art.Name, art.Version, shortSum(art.Sums.SHA256))
	if opt.ForceNewName {
		name += "-" + now.UTC().Format("20060102T150405Z")
	}
	return name
}

// existing is what Replace replaces: the AMI of the name in each region.
type existing map[string]*ec2types.Image

// checkNames looks the AMI name up in the region and in every region it
// is to be copied to, before anything is uploaded: AMI names are unique per
// account and region, and finding a clash only at RegisterImage or
// CopyImage wasted the whole upload. The calls also prove the credentials
// and the regions. With Replace the existing AMIs of that name are
// returned, each deregistered just before the new one takes its name;
// otherwise a clash is an error that says what to do.
func checkNames(ctx context.Context, cfg aws.Config, regions []string, name string, art register.Artifact, opt register.Options) (existing, error) {
	old := existing{}
	for _, region := range regions {
		rc := cfg.Copy()
		rc.Region = region
		img, err := checkName(ctx, ec2.NewFromConfig(rc), region, name, art, opt)
		if err != nil {
			return nil, err
		}
		if img != nil {
			old[region] = img
		}
	}
	return old, nil
}

func checkName(ctx context.Context, c *ec2.Client, region, name string, art register.Artifact, opt register.Options) (*ec2types.Image, error) {
	out, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"},
		Filters: []ec2types.Filter{{Name: aws.String("name"), Values: []string{name}}}})
	if err != nil {
		return nil, fmt.Errorf("look up AMI name %s in %s: %w", name, region, explain(err))
	}
	if len(out.Images) == 0 {
		return nil, nil
	}
	old := out.Images[0]
	if opt.Replace {
		progress.Logf("ec2: %s: %s already has the name %s; it is deregistered when the new AMI is ready to be registered", region, aws.ToString(old.ImageId), name)
		return &old, nil
	}
	same := "another image"
	for _, tg := range old.Tags {
		if aws.ToString(tg.Key) == "conpaas:md5" && aws.ToString(tg.Value) == art.Sums.MD5 {
			same = "this very image: its conpaas:md5 tag matches"
		}
	}
	return nil, fmt.Errorf("AMI name %s is already used in %s by %s (%s); nothing was uploaded. "+
		"If that AMI is what you want, use it (record it with `cpsimage catalogue set-registration`); "+
		"-replace deregisters it and registers this image anew, -force-new-name registers another AMI beside it",
		name, region, aws.ToString(old.ImageId), same)
}

// deregister deregisters the AMI that Replace replaces in region, right
// before the new one takes its name. Its snapshots and bundle stay: other
// AMIs or the catalogue may still name them.
func (old existing) deregister(ctx context.Context, c *ec2.Client, region string) error {
	img := old[region]
	if img == nil {
		return nil
	}
	delete(old, region)
	id := aws.ToString(img.ImageId)
	if _, err := c.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: img.ImageId}); err != nil {
		return fmt.Errorf("-replace: deregister %s in %s: %w", id, region, explain(err))
	}
	progress.Logf("ec2: %s: deregistered %s (-replace); its snapshots and bundle are kept", region, id)
	return nil
}
