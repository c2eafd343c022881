package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/conpaas/cps/clouds/compute"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
)

// flakyCloud fails Probe `fails` times (as Keystone does while it starts:
// connection refused), then succeeds.
type flakyCloud struct {
	compute.Cloud
	fails, calls int
}

func (f *flakyCloud) Probe(context.Context) (time.Time, error) {
	f.calls++
	if f.calls <= f.fails {
		return time.Time{}, errors.New("dial tcp 127.0.0.1:5000: connect: connection refused")
	}
	return time.Now(), nil
}

func TestProbeCloudsWait(t *testing.T) {
	old := retryEvery
	retryEvery = 10 * time.Millisecond
	defer func() { retryEvery = old }()
	cases := []struct {
		name      string
		fails     int
		wait      time.Duration
		wantErr   string // "" for success
		wantCalls int
	}{
		{"up at once, no wait", 0, 0, "", 1},
		{"down, no wait: fails at once and says how to wait", 1, 0, "--cloud-wait DURATION", 1},
		{"comes up within the wait", 3, 5 * time.Second, "", 4},
		{"never comes up within the wait", 1 << 30, 50 * time.Millisecond, "still failing after --cloud-wait 50ms", -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := &config.Config{Path: "/etc/cpsdirector/director.cfg", Clouds: []config.Cloud{{Name: "iaas", Driver: "openstack", Line: 12}}}
			fc := &flakyCloud{fails: c.fails}
			var logs bytes.Buffer
			err := probeClouds(context.Background(), cfg, map[string]compute.Cloud{"iaas": fc}, c.wait, slog.New(slog.NewTextHandler(&logs, nil)))
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("probeClouds: %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), "line 12 of /etc/cpsdirector/director.cfg") {
				t.Fatalf("error %v, want one naming the config line and %q", err, c.wantErr)
			}
			if c.wantCalls >= 0 && fc.calls != c.wantCalls {
				t.Errorf("Probe called %d times, want %d", fc.calls, c.wantCalls)
			}
			if retries := strings.Count(logs.String(), "cloud not ready"); c.wantCalls > 1 && retries != c.wantCalls-1 {
				t.Errorf("%d retry log lines, want %d:\n%s", retries, c.wantCalls-1, logs.String())
			}
		})
	}
	// An interrupt stops the wait at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg := &config.Config{Clouds: []config.Cloud{{Name: "iaas"}}}
	if err := probeClouds(ctx, cfg, map[string]compute.Cloud{"iaas": &flakyCloud{fails: 1}}, time.Hour, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a cancelled wait returned nil")
	}
}
