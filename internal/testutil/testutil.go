// Package testutil holds helpers shared by tests.
package testutil

import (
	"cmp"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Strict reports whether missing external tools must fail tests instead of
// skipping them. `make test` and CI set CPS_REQUIRE_TOOLS=1 after installing
// every dependency, so a core path can never be skipped silently there.
func Strict() bool { return os.Getenv("CPS_REQUIRE_TOOLS") == "1" || os.Getenv("CI") == "true" }

// RequireTool returns the path of an external program, skipping the test (or
// failing it in strict mode) when it is not installed.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if Strict() {
			t.Fatalf("%s is not installed: run scripts/deps.sh (make test does)", name)
		}
		t.Skipf("%s not installed; run scripts/deps.sh", name)
	}
	return p
}

// RequireRoot skips (or fails in strict mode) unless running as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if Strict() {
			t.Fatal("this test needs root (bootstrapping a Debian root filesystem)")
		}
		t.Skip("needs root")
	}
}

// CacheDir is the cache directory tests pass to builders (builders.Options
// CacheDir), as cpsimage does: $CPS_CACHE, default /var/cache/cps. Builders
// themselves never read the environment.
func CacheDir() string { return cmp.Or(os.Getenv("CPS_CACHE"), "/var/cache/cps") }

// FreePort is a TCP port on 127.0.0.1 that nothing listens on right now,
// for a server a test starts as another process.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Tail is the last n lines of s (a tool's output, for a failure message).
func Tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
