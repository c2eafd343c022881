package ec2

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/conpaas/cps/clouds/awsaccess"
	"github.com/conpaas/cps/internal/testutil"
)

// An endpoint that accepts connections and never answers (a firewall, a
// hung service, another service's port) made register wait until it was
// killed: every attempt had no deadline. The access check is bounded by
// AccessTimeout and says what to check; a closed port still fails at once.
func TestAccessSilentEndpoint(t *testing.T) {
	silentAddr := testutil.SilentListener(t)
	defer func(d time.Duration) { AccessTimeout = d }(AccessTimeout)
	AccessTimeout = 300 * time.Millisecond
	tests := []struct {
		name, endpoint, want string
	}{
		{"silent", "http://" + silentAddr, "EC2 in us-east-1 did not answer within 300ms; check the network, the region and any endpoint override"},
		{"closed port", "http://127.0.0.1:9", "cannot reach the AWS endpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := awsaccess.Config{Endpoint: tc.endpoint, MaxAttempts: 1,
				Credentials: credentials.NewStaticCredentialsProvider("AKIAEXAMPLE", "secret", "")}
			start := time.Now()
			_, err := checkAccess(context.Background(), a, AMISettings{Region: "us-east-1"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want %q", err, tc.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}
