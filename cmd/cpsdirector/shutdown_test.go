package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestShutdownError: SIGTERM while /create_nodes waited for agents ended
// serve with a bare "context deadline exceeded"; it now says what was
// still running and that the VMs are taken over at the next start.
func TestShutdownError(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{context.DeadlineExceeded, "stopped with requests still running after 20s"},
		{fmt.Errorf("wrapped: %w", context.DeadlineExceeded), "the next start takes them over"},
		{errors.New("listener gone"), "shutdown: listener gone"},
	} {
		if got := shutdownError(c.err).Error(); !strings.Contains(got, c.want) {
			t.Errorf("shutdownError(%v) = %q, want it to contain %q", c.err, got, c.want)
		}
	}
}
