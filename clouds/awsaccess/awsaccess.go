// Package awsaccess is how cps reaches AWS, for cpsimage's ec2-ebs and
// ec2-s3 targets and the director's EC2 compute driver alike (as
// packer-plugin-amazon shares one access config across its builders): the
// region, the credentials, endpoint overrides and the account's bundle
// signing identity. The library takes a Config; only cmd/ reads the
// environment (FromEnv).
package awsaccess

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Config is one AWS account's access.
type Config struct {
	// Region is the default region (a register block's or -region wins).
	Region string
	// Credentials, if set, replace the SDK's default chain (environment,
	// shared config and profile, instance metadata).
	Credentials aws.CredentialsProvider
	// Endpoint overrides every service's endpoint (tests: the EC2 fake;
	// EC2-compatible clouds). S3Endpoint overrides S3's alone, with
	// path-style addressing, and S3Credentials its credentials (an S3
	// server with keys of its own).
	Endpoint, S3Endpoint string
	S3Credentials        aws.CredentialsProvider
	// HTTPClient, if set, makes every call (tests trusting a test CA).
	HTTPClient *http.Client
	// MaxAttempts bounds retries (default 8).
	MaxAttempts int

	// The account's bundle signing identity, as ec2-bundle-image takes it
	// (-u, -c, -k, --ec2cert): the 12-digit account id, the user's X.509
	// certificate and RSA private key, and EC2's certificate (cert-ec2.pem
	// of ec2-ami-tools), as PEM file paths. A register block's settings win.
	AccountID, Cert, PrivateKey, EC2Cert string
}

// FromEnv reads the variables the AWS CLI and ec2-ami-tools read, and the
// ConPaaS seeds' EC2_ACCESS_KEY / EC2_SECRET_KEY. The SDK's own chain
// (AWS_ACCESS_KEY_ID, AWS_PROFILE, AWS_ENDPOINT_URL, ...) is read by the
// SDK when Credentials is nil. Only cmd/ calls it.
func FromEnv(getenv func(string) string) Config {
	c := Config{Region: cmp.Or(getenv("AWS_REGION"), getenv("AWS_DEFAULT_REGION")),
		AccountID: getenv("AWS_ACCOUNT_ID"), Cert: getenv("EC2_CERT"), PrivateKey: getenv("EC2_PRIVATE_KEY")}
	if getenv("AWS_ACCESS_KEY_ID") == "" && getenv("EC2_ACCESS_KEY") != "" {
		c.Credentials = credentials.NewStaticCredentialsProvider(getenv("EC2_ACCESS_KEY"), getenv("EC2_SECRET_KEY"), "")
	}
	// ec2-bundle-image looks for EC2's certificate in the tools' tree.
	candidates := []string{"/etc/ec2/amitools/cert-ec2.pem"}
	if home := getenv("EC2_AMITOOL_HOME"); home != "" {
		candidates = append([]string{filepath.Join(home, "etc/ec2/amitools/cert-ec2.pem")}, candidates...)
	}
	for _, p := range candidates {
		if _, err := os.Stat(p); err == nil {
			c.EC2Cert = p
			break
		}
	}
	return c
}

// Static returns a config with fixed keys (the director's settings).
func Static(region, accessKey, secretKey, endpoint string) Config {
	return Config{Region: region, Endpoint: endpoint,
		Credentials: credentials.NewStaticCredentialsProvider(accessKey, secretKey, "")}
}

// Load makes the SDK configuration for region (Region when empty) and
// fails at once, naming what to set, when there are no credentials.
func (c Config) Load(ctx context.Context, region string) (aws.Config, error) {
	region = cmp.Or(region, c.Region)
	if region == "" {
		return aws.Config{}, errors.New("no AWS region: set region in the register block, -region, or AWS_REGION")
	}
	attempts := cmp.Or(c.MaxAttempts, 8)
	opts := []func(*config.LoadOptions) error{config.WithRegion(region),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = attempts; o.MaxBackoff = 5 * time.Second })
		})}
	if c.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(c.Credentials))
	}
	if c.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(c.HTTPClient))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return cfg, fmt.Errorf("AWS configuration: %w", err)
	}
	if c.Endpoint != "" {
		cfg.BaseEndpoint = aws.String(c.Endpoint)
	}
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		return cfg, fmt.Errorf("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or EC2_ACCESS_KEY and EC2_SECRET_KEY), or AWS_PROFILE: %s", firstLine(err))
	}
	return cfg, nil
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
