package osauth

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// A Keystone URL that accepts connections and never answers made register
// wait until it was killed. Getting a token is bounded by AuthTimeout, and
// the error names the setting; a closed port still fails at once.
func TestAuthenticateSilentEndpoint(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn // accepted and never answered
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	defer func(d time.Duration) { AuthTimeout = d }(AuthTimeout)
	AuthTimeout = 300 * time.Millisecond
	silent := "http://" + ln.Addr().String() + "/v3"
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
