package ec2

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/conpaas/cps/clouds/awsaccess"
	"github.com/conpaas/cps/clouds/register"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/internal/progress"
)

// checkAccess loads the AWS configuration for the block's region and
// proves the credentials and every region the AMI goes to with one cheap
// call each (DescribeRegions), before the file is hashed or anything
// uploaded; its errors name the setting that is wrong.
func checkAccess(ctx context.Context, access awsaccess.Config, set AMISettings) (aws.Config, error) {
	cfg, err := access.Load(ctx, set.Region)
	if err != nil {
		return cfg, err
	}
	for _, region := range append([]string{cfg.Region}, set.CopyTo...) {
		rc := cfg.Copy()
		rc.Region = region
		// An endpoint that accepts connections and never answers made
		// every attempt wait forever: the check is bounded.
		cctx, cancel := context.WithTimeout(ctx, AccessTimeout)
		_, err := ec2.NewFromConfig(rc).DescribeRegions(cctx, &ec2.DescribeRegionsInput{RegionNames: []string{region}})
		timedOut := ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded)
		cancel()
		if err != nil && timedOut {
			return cfg, fmt.Errorf("EC2 in %s did not answer within %v; check the network, the region and any endpoint override (AWS_ENDPOINT_URL)", region, AccessTimeout)
		}
		if err != nil {
			return cfg, fmt.Errorf("EC2 in %s: %w", region, explainRegion(err, region))
		}
	}
	return cfg, nil
}

// AccessTimeout bounds checkAccess's call in each region, retries included.
var AccessTimeout = time.Minute

// imageInput is what every ConPaaS AMI has in common: HVM, ENA and SR-IOV,
// the architecture and the boot mode of the image.
func imageInput(name string, art register.Artifact) *ec2.RegisterImageInput {
	return &ec2.RegisterImageInput{
		Name: aws.String(name), Description: aws.String("ConPaaS " + art.Version + " (" + art.Name + "), md5 " + art.Sums.MD5),
		Architecture: amiArch(art.Arch), VirtualizationType: aws.String("hvm"),
		EnaSupport: aws.Bool(true), SriovNetSupport: aws.String("simple"), BootMode: bootMode(art.Boot),
	}
}

// amiArch is EC2's name of a Debian architecture.
func amiArch(a catalogue.Arch) ec2types.ArchitectureValues {
	if a == catalogue.ArchARM64 {
		return ec2types.ArchitectureValuesArm64
	}
	return ec2types.ArchitectureValuesX8664
}

// checkBoot refuses, before anything is uploaded, an image EC2 could not
// boot: one whose boot modes are unknown (an AMI's boot mode must be set
// right or instances never start), an arm64 one without UEFI (Graviton
// instances have no BIOS), and one the block's architecture contradicts.
func checkBoot(art register.Artifact, set AMISettings) error {
	if set.Architecture != "" && ec2types.ArchitectureValues(set.Architecture) != amiArch(art.Arch) && set.Architecture != string(art.Arch) {
		return fmt.Errorf("the register block says architecture %s but %s is %s (the catalogue's arch, or -arch): remove architecture from the block, the AMI's is the image's", set.Architecture, art.Path, art.Arch)
	}
	if len(art.Boot) == 0 {
		why := art.BootUnknown
		if why == "" {
			why = "the catalogue records no boot modes for it"
		}
		return fmt.Errorf("cannot tell how %s boots (%s); say it with register -boot bios, uefi or bios,uefi", art.Path, why)
	}
	if art.Arch == catalogue.ArchARM64 && !art.Boot.Has(catalogue.BootUEFI) {
		return fmt.Errorf("%s is arm64 but boots only %s: arm64 EC2 instances boot only UEFI; build it with an EFI system partition", art.Path, art.Boot)
	}
	return nil
}

// bootMode is the AMI boot mode for the image's boot modes: an image that
// boots both ways is uefi-preferred (UEFI on instance types that have it,
// BIOS elsewhere), one that boots only from UEFI is uefi; anything else
// legacy-bios, as AWS assumes when none is set.
func bootMode(b catalogue.BootModes) ec2types.BootModeValues {
	switch {
	case b.Has(catalogue.BootUEFI) && b.Has(catalogue.BootBIOS):
		return ec2types.BootModeValuesUefiPreferred
	case b.Has(catalogue.BootUEFI):
		return ec2types.BootModeValuesUefi
	}
	return ec2types.BootModeValuesLegacyBios
}

// ebsImage registers an EBS-backed AMI whose root volume is snap.
func ebsImage(name, snap string, art register.Artifact) *ec2.RegisterImageInput {
	in := imageInput(name, art)
	in.RootDeviceName = aws.String("/dev/xvda")
	in.BlockDeviceMappings = []ec2types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"),
		Ebs: &ec2types.EbsBlockDevice{SnapshotId: aws.String(snap), DeleteOnTermination: aws.Bool(true), VolumeType: ec2types.VolumeTypeGp3}}}
	return in
}

// copyTo copies ami to the CopyTo regions, waits for each copy, tags it
// and returns their registrations. Copies are recorded for cleanup.
func (r *amiRun) copyTo(ctx context.Context, ami string) ([]catalogue.Registration, error) {
	var regs []catalogue.Registration
	now := time.Now().UTC().Truncate(time.Second)
	for _, dst := range r.set.CopyTo {
		if dst == r.set.Region {
			continue
		}
		dcfg := r.cfg.Copy()
		dcfg.Region = dst
		dc := ec2.NewFromConfig(dcfg)
		if r.done[dst] == nil {
			r.done[dst] = &created{region: dst}
		}
		if err := r.old.deregister(ctx, dc, dst); err != nil {
			return regs, err
		}
		cp, err := dc.CopyImage(ctx, &ec2.CopyImageInput{Name: aws.String(r.name), SourceImageId: aws.String(ami), SourceRegion: aws.String(r.set.Region)})
		if err != nil {
			return regs, fmt.Errorf("CopyImage to %s: %w", dst, explain(err))
		}
		id := aws.ToString(cp.ImageId)
		r.done[dst].images = append(r.done[dst].images, id)
		w := ec2.NewImageAvailableWaiter(dc, func(o *ec2.ImageAvailableWaiterOptions) {
			o.MinDelay = 50 * time.Millisecond
			o.MaxDelay = 15 * time.Second
		})
		if err := w.Wait(ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}}, 2*time.Hour); err != nil {
			return regs, fmt.Errorf("waiting for the copy %s in %s: %w", id, dst, explain(err))
		}
		if err := r.finish(ctx, dc, id, ""); err != nil {
			return regs, err
		}
		progress.Logf("%s: copied %s to %s as %s", r.target, ami, dst, id)
		regs = append(regs, catalogue.Registration{Cloud: catalogue.CloudEC2, Target: r.target, Region: dst, ImageID: id, Time: now})
	}
	return regs, nil
}
