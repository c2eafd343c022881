package ec2

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/conpaas/cps/clouds/awsaccess"
	"github.com/conpaas/cps/clouds/register"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/plan"
	"github.com/conpaas/cps/test/ec2fake"
	"github.com/conpaas/cps/test/s3server"
)

// Every credential or endpoint failure names the setting to fix, in one
// line, before the image is read: the artifact here does not even exist,
// so any error about it would mean the file was opened or hashed first.
// EC2 is the fake (its error codes are EC2's: AuthFailure for an unknown
// access key, SignatureDoesNotMatch for a wrong secret); S3 is the real
// versitygw, answering as S3 does (InvalidAccessKeyId, SignatureDoesNotMatch).
func TestAccessErrors(t *testing.T) {
	ep, ak, sk := s3server.Start(t)
	f := ec2fake.Start()
	defer f.Close()
	art := register.Artifact{Path: "/nonexistent/conpaas.img", Name: "conpaas", Version: "2.1.0", Kind: catalogue.KindRaw, Arch: catalogue.ArchAMD64}
	good := func() awsaccess.Config {
		return awsaccess.Config{Endpoint: f.URL, Credentials: credentials.NewStaticCredentialsProvider(f.AccessKey, f.Secret, ""),
			S3Endpoint: ep, S3Credentials: credentials.NewStaticCredentialsProvider(ak, sk, "")}
	}
	cases := []struct {
		name   string
		target string
		access func(a *awsaccess.Config)
		reg    func(r *plan.Register)
		want   string
	}{
		{"ec2 secret key", plan.TargetEC2EBS, func(a *awsaccess.Config) {
			a.Credentials = credentials.NewStaticCredentialsProvider(f.AccessKey, "wrong", "")
		}, nil, "the secret key is wrong; check AWS_SECRET_ACCESS_KEY"},
		{"ec2 access key", plan.TargetEC2EBS, func(a *awsaccess.Config) {
			a.Credentials = credentials.NewStaticCredentialsProvider("AKIAUNKNOWN", f.Secret, "")
		}, nil, "AWS does not know the access key id (AuthFailure"},
		{"region", plan.TargetEC2EBS, nil, func(r *plan.Register) { r.Region = "mars-north-1" },
			"EC2 in mars-north-1: EC2 does not know region mars-north-1"},
		{"copy-to region", plan.TargetEC2EBS, nil, func(r *plan.Register) { r.CopyTo = []string{"eu-west-1", "mars-south-2"} },
			"EC2 does not know region mars-south-2"},
		{"no region", plan.TargetEC2EBS, nil, func(r *plan.Register) { r.Region = "" }, "no AWS region: set region in the register block, -region, or AWS_REGION"},
		{"ec2 endpoint", plan.TargetEC2EBS, func(a *awsaccess.Config) { a.Endpoint = "http://127.0.0.1:9"; a.MaxAttempts = 1 }, nil,
			"cannot reach the AWS endpoint"},
		{"s3 secret key", plan.TargetEC2S3, func(a *awsaccess.Config) {
			a.S3Credentials = credentials.NewStaticCredentialsProvider(ak, "wrong", "")
		}, nil, "S3 rejected the request signature: the secret key is wrong; check AWS_SECRET_ACCESS_KEY"},
		{"s3 access key", plan.TargetEC2S3, func(a *awsaccess.Config) {
			a.S3Credentials = credentials.NewStaticCredentialsProvider("nobody", sk, "")
		}, nil, "S3 does not know the access key id; check AWS_ACCESS_KEY_ID"},
		{"s3 endpoint", plan.TargetEC2S3, func(a *awsaccess.Config) { a.S3Endpoint = "http://127.0.0.1:9"; a.MaxAttempts = 1 }, nil,
			"cannot reach the AWS endpoint"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := good()
			if tc.access != nil {
				tc.access(&a)
			}
			reg := plan.Register{Name: "aws", Target: tc.target, Region: "us-east-1", Method: "import", Bucket: "cps-access"}
			if tc.target == plan.TargetEC2EBS {
				reg.Method, reg.Bucket = "", ""
			}
			if tc.reg != nil {
				tc.reg(&reg)
			}
			tg, err := register.New(tc.target, register.Env{AWS: a})
			if err != nil {
				t.Fatal(err)
			}
			before := len(f.Images) + len(f.Snapshots)
			err = register.Prepare(context.Background(), tg, reg, art)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "nonexistent") {
				t.Errorf("not one line about the setting: %q", err)
			}
			if len(f.Images)+len(f.Snapshots) != before {
				t.Error("something was created")
			}
		})
	}
}
