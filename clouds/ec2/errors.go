package ec2

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
)

// explain turns AWS error codes into what to do.
func explain(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "AuthFailure", "UnrecognizedClientException", "InvalidClientTokenId":
			// A wrong secret is SignatureDoesNotMatch (below): these
			// say the key id (or its session token) is not valid.
			return fmt.Errorf("AWS does not know the access key id (%s: %s); check AWS_ACCESS_KEY_ID (or EC2_ACCESS_KEY, the profile), and AWS_SESSION_TOKEN for temporary keys", ae.ErrorCode(), ae.ErrorMessage())
		case "SignatureDoesNotMatch":
			return fmt.Errorf("AWS rejected the request signature (%s): the secret key is wrong; check AWS_SECRET_ACCESS_KEY (or EC2_SECRET_KEY, the profile)", ae.ErrorMessage())
		case "RequestExpired":
			return fmt.Errorf("AWS says the request expired: this machine's clock is off; set the time (e.g. ntpdate) and retry")
		}
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) || strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "no such host") {
		return fmt.Errorf("cannot reach the AWS endpoint (%v); check the network, the region and any endpoint override", err)
	}
	return err
}

// explainS3 is explain for S3, which answers HEAD requests without an
// error code and names a missing permission AccessDenied.
func explainS3(err error, bucket string) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "SignatureDoesNotMatch":
			return fmt.Errorf("S3 rejected the request signature: the secret key is wrong; check AWS_SECRET_ACCESS_KEY (or EC2_SECRET_KEY, the profile)")
		case "InvalidAccessKeyId", "XAdminUserNotFound": // S3's code; versitygw's (an S3-compatible server)
			return fmt.Errorf("S3 does not know the access key id; check AWS_ACCESS_KEY_ID (or EC2_ACCESS_KEY, the profile)")
		case "AccessDenied", "AllAccessDisabled":
			return fmt.Errorf("S3 denied access to bucket %s (%s): the credentials are valid but may not use this bucket (it may belong to another account); check its policy or use another bucket", bucket, ae.ErrorMessage())
		}
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusForbidden {
		return fmt.Errorf("S3 answered 403 Forbidden for bucket %s: the credentials are wrong or may not use this bucket", bucket)
	}
	return explain(err)
}

// explainRegion is explain for the first call in a region, where a wrong
// region shows: a region name AWS does not have has no endpoint (its host
// does not resolve), an opt-in region the account has not enabled answers
// OptInRequired, and EC2-compatible endpoints say so in an AuthFailure.
func explainRegion(err error, region string) error {
	const check = "check region in the register block, -region or AWS_REGION (and -copy-to)"
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch {
		case ae.ErrorCode() == "OptInRequired":
			return fmt.Errorf("region %s is not enabled for this account (OptInRequired): enable it in the AWS console, or %s", region, check)
		case ae.ErrorCode() == "InvalidParameterValue" && strings.Contains(ae.ErrorMessage(), "region"),
			ae.ErrorCode() == "AuthFailure" && strings.Contains(ae.ErrorMessage(), "region"):
			return fmt.Errorf("EC2 does not know region %s (%s: %s); %s", region, ae.ErrorCode(), ae.ErrorMessage(), check)
		}
	}
	if strings.Contains(err.Error(), "no such host") {
		return fmt.Errorf("no EC2 endpoint for region %s (its host does not resolve): the region name is wrong, or this machine has no DNS; %s", region, check)
	}
	return explain(err)
}
