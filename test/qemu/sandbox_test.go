package qemu

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSandbox: what runs in a Sandbox sees only loopback (no route
// anywhere), its canary is not the host's loopback, and an unrestricted
// NIC is refused outside a Sandbox.
func TestSandbox(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CPS_REQUIRE_TOOLS") != "" {
			t.Fatal("TestSandbox needs root (ip netns)")
		}
		t.Skip("needs root (ip netns)")
	}
	s := NewSandbox(t)
	c := NewCanaryIn(t, s)

	// A process started in the sandbox: its interfaces and routes.
	var out strings.Builder
	cmd := exec.Command("sh", "-c", "ip -o link; echo ROUTES; ip route; ip -6 route")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := s.do(func() error { return cmd.Run() }); err != nil {
		t.Fatalf("ip in the sandbox: %v: %s", err, out.String())
	}
	links, routes, _ := strings.Cut(out.String(), "ROUTES\n")
	if n := strings.Count(strings.TrimSpace(links), "\n") + 1; n != 1 || !strings.Contains(links, ": lo:") {
		t.Errorf("the sandbox has other interfaces than lo:\n%s", links)
	}
	for _, l := range strings.Split(strings.TrimSpace(routes), "\n") {
		if l != "" && !strings.Contains(l, " dev lo") {
			t.Errorf("the sandbox has a route off loopback: %s", l)
		}
	}

	// The canary listens in the sandbox, not on the host's loopback.
	if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.Port), time.Second); err == nil {
		conn.Close()
		t.Errorf("the host's 127.0.0.1:%d reached the sandbox's canary", c.Port)
	}
	probe := exec.Command("bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d", c.Port))
	if err := s.do(probe.Run); err != nil {
		t.Fatalf("a connection inside the sandbox did not reach its canary: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(c.Hits()) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if len(c.Hits()) != 1 {
		t.Errorf("canary hits %q, want the one connection from inside the sandbox", c.Hits())
	}

	_, err := Start(context.Background(), Options{Image: "/dev/null", NICs: []NIC{{Unrestricted: true}}})
	if err == nil || !strings.Contains(err.Error(), "only in a Sandbox") {
		t.Errorf("an unrestricted NIC without a sandbox: %v, want a refusal", err)
	}
}
