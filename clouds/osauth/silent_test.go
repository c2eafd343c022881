package osauth

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/conpaas/cps/internal/testutil"
)

// A Keystone URL that accepts connections and never answers made register
// wait until it was killed. Getting a token is bounded by AuthTimeout, and
// the error names the setting; a closed port still fails at once.
func TestAuthenticateSilentEndpoint(t *testing.T) {
	silentAddr := testutil.SilentListener(t)
	defer func(d time.Duration) { AuthTimeout = d }(AuthTimeout)
	AuthTimeout = 300 * time.Millisecond
	silent := "http://" + silentAddr + "/v3"
	tests := []struct {
		name, url, want string
	}{
		{"silent", silent, "no answer from Keystone at " + silent + " within 300ms; check OS_AUTH_URL"},
		{"closed port", "http://127.0.0.1:9/v3", "cannot reach Keystone at http://127.0.0.1:9/v3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Password(tc.url, "admin", "secret", "admin", "Default", "")
			start := time.Now()
			_, err := c.Authenticate(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want %q", err, tc.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}
