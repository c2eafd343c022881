package glance

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/conpaas/cps/clouds/osauth"
	"github.com/conpaas/cps/internal/testutil"
)

// A noauth Glance endpoint that accepts connections and never answers
// made register wait until it was killed; the first request is bounded by
// osauth.AuthTimeout like Keystone's, and the error names the setting.
func TestNoAuthSilentEndpoint(t *testing.T) {
	silentAddr := testutil.SilentListener(t)
	defer func(d time.Duration) { osauth.AuthTimeout = d }(osauth.AuthTimeout)
	osauth.AuthTimeout = 300 * time.Millisecond
	silent := "http://" + silentAddr
	tests := []struct {
		name, endpoint, want string
	}{
		{"silent", silent, "no answer from Glance at " + silent + " within 300ms; check CPS_GLANCE_ENDPOINT"},
		{"closed port", "http://127.0.0.1:9", "cannot reach Glance at http://127.0.0.1:9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := (&Target{Endpoint: tc.endpoint}).Check(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want %q", err, tc.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}
