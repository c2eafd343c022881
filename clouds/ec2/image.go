package ec2

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/conpaas/cps/clouds/register"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/internal/progress"
	"github.com/conpaas/cps/plan"
)

// imageInput is what every ConPaaS AMI has in common: HVM, ENA and SR-IOV,
// the architecture and the boot mode of the image's bootloader.
func imageInput(name string, reg plan.Register, art register.Artifact) *ec2.RegisterImageInput {
	arch := ec2types.ArchitectureValuesX8664
	if art.Arch == "arm64" || reg.Architecture == "arm64" {
		arch = ec2types.ArchitectureValuesArm64
	}
	return &ec2.RegisterImageInput{
		Name: aws.String(name), Description: aws.String("ConPaaS " + art.Version + " (" + art.Name + "), md5 " + art.Sums.MD5),
		Architecture: arch, VirtualizationType: aws.String("hvm"),
		EnaSupport: aws.Bool(true), SriovNetSupport: aws.String("simple"), BootMode: bootMode(art.Boot),
	}
}

// checkBoot refuses, before anything is uploaded, an image EC2 could not
// boot: one whose boot modes are unknown (an AMI's boot mode must be set
// right or instances never start) and an arm64 one without UEFI (Graviton
// instances have no BIOS).
func checkBoot(art register.Artifact) error {
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
// (BIOS only, or not recorded) legacy-bios, as AWS assumes when none is set.
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
func ebsImage(name, snap string, reg plan.Register, art register.Artifact) *ec2.RegisterImageInput {
	in := imageInput(name, reg, art)
	in.RootDeviceName = aws.String("/dev/xvda")
	in.BlockDeviceMappings = []ec2types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"),
		Ebs: &ec2types.EbsBlockDevice{SnapshotId: aws.String(snap), DeleteOnTermination: aws.Bool(true), VolumeType: ec2types.VolumeTypeGp3}}}
	return in
}

// copyTo copies ami to reg.CopyTo's regions, waits for each copy, tags it
// and returns their registrations. Copies are recorded in done for cleanup.
func (t *EBS) copyTo(ctx context.Context, cfg aws.Config, ami, name string, reg plan.Register, art register.Artifact, target string, old existing, done map[string]*created) ([]catalogue.Registration, error) {
	var regs []catalogue.Registration
	now := time.Now().UTC().Truncate(time.Second)
	for _, dst := range reg.CopyTo {
		if dst == reg.Region {
			continue
		}
		dcfg := cfg.Copy()
		dcfg.Region = dst
		dc := ec2.NewFromConfig(dcfg)
		if done[dst] == nil {
			done[dst] = &created{region: dst}
		}
		if err := old.deregister(ctx, dc, dst); err != nil {
			return regs, err
		}
		cp, err := dc.CopyImage(ctx, &ec2.CopyImageInput{Name: aws.String(name), SourceImageId: aws.String(ami), SourceRegion: aws.String(reg.Region)})
		if err != nil {
			return regs, fmt.Errorf("CopyImage to %s: %w", dst, explain(err))
		}
		id := aws.ToString(cp.ImageId)
		done[dst].images = append(done[dst].images, id)
		w := ec2.NewImageAvailableWaiter(dc, func(o *ec2.ImageAvailableWaiterOptions) {
			o.MinDelay = 50 * time.Millisecond
			o.MaxDelay = 15 * time.Second
		})
		if err := w.Wait(ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}}, 2*time.Hour); err != nil {
			return regs, fmt.Errorf("waiting for the copy %s in %s: %w", id, dst, explain(err))
		}
		if err := t.finish(ctx, dc, id, "", reg, art); err != nil {
			return regs, err
		}
		progress.Logf("%s: copied %s to %s as %s", target, ami, dst, id)
		regs = append(regs, catalogue.Registration{Cloud: "ec2", Target: target, Region: dst, ImageID: id, Time: now})
	}
	return regs, nil
}
