//go:build e2e

// Package fresh proves the README's promise that a fresh Debian 12 machine
// needs nothing but the repository (and make, to type the command): in a
// Debian bookworm tree bootstrapped by mmdebstrap, the set-up steps of
// `make image` install the Go toolchain go.mod names, build the binaries
// and install the image build's Debian packages, and a second run
// installs nothing.
package fresh

import (
	"cmp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/conpaas/cps/internal/testutil"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func mirror() string {
	if m := os.Getenv("CPS_MIRROR"); m != "" {
		return m
	}
	return "http://deb.debian.org/debian"
}

func TestFreshDebian(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tool := range []string{"mmdebstrap", "unshare", "git"} {
		testutil.RequireTool(t, tool)
	}
	root := repoRoot(t)
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^go (\S+)`).FindSubmatch(gomod)[1]
	goroot := "/usr/local/lib/cps/go" + string(want)

	// The machine: Debian 12 minbase plus make and git (what a user needs to
	// clone the repository and type the command). Downloaded packages are
	// shared with the image builds' cache.
	tree := filepath.Join(t.TempDir(), "debian")
	cache := filepath.Join(cmp.Or(os.Getenv("CPS_CACHE"), "/var/cache/cps"), "apt", "amd64")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	boot := exec.Command("unshare", "--mount", "--propagation", "private", "--",
		"mmdebstrap", "--variant=minbase", "--include=make,git",
		`--setup-hook=mkdir -p "$1"/var/cache/apt/archives/`,
		"--setup-hook=sync-in "+cache+" /var/cache/apt/archives/",
		"--customize-hook=sync-out /var/cache/apt/archives "+cache,
		`--customize-hook=rm -f "$1"/var/cache/apt/archives/*.deb`,
		"bookworm", tree, mirror())
	if out, err := boot.CombinedOutput(); err != nil {
		t.Fatalf("mmdebstrap: %v\n%s", err, testutil.Tail(string(out), 30))
	}
	t.Logf("fresh Debian 12 tree in %s", time.Since(start).Round(time.Second))
	if _, err := os.Stat(filepath.Join(tree, "usr/bin/go")); err == nil {
		t.Fatal("the fresh tree already has a go")
	}

	// The repository, as a clone holding the working tree's changes.
	src := filepath.Join(tree, "src")
	if out, err := exec.Command("git", "clone", "-q", "--no-hardlinks", root, src).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	ls := exec.Command("git", "ls-files", "-z", "--modified", "--others", "--exclude-standard")
	ls.Dir = root
	changed, err := ls.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(changed), "\x00"), "\x00") {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue // deleted in the working tree
		}
		st, _ := os.Stat(filepath.Join(root, f))
		os.MkdirAll(filepath.Dir(filepath.Join(src, f)), 0o755)
		if err := os.WriteFile(filepath.Join(src, f), b, st.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	// The machine's site configuration: its resolver and its local CA
	// certificates (where a TLS-inspecting proxy stands between the
	// machine and the Go module proxy, as on this project's machines, a
	// fresh install gets its CA the same way), which the ca-certificates
	// package adds to the store when go.sh installs it.
	local, _ := filepath.Glob("/usr/local/share/ca-certificates/*.crt")
	if err := os.MkdirAll(filepath.Join(tree, "usr/local/share/ca-certificates"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range local {
		b, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tree, "usr/local/share/ca-certificates", filepath.Base(c)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(tree, "etc/resolv.conf"))
	if err := os.WriteFile(filepath.Join(tree, "etc/resolv.conf"), resolv, 0o644); err != nil {
		t.Fatal(err)
	}

	// make image's set-up steps (make build, then deps.sh base raw), twice,
	// as root in the tree: in a private mount namespace with the tree's own
	// /proc and the host's /dev, which vanish with it, and the environment
	// of a fresh login.
	run := func(what string) (string, time.Duration) {
		t.Helper()
		script := `set -e
mount -t proc proc "$1/proc"
mount --rbind /dev "$1/dev"
exec chroot "$1" env -i HOME=/root TERM=dumb LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	sh -c "cd /src && $2"`
		cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", tree, what)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		el := time.Since(start)
		if err != nil {
			t.Fatalf("%s in the fresh tree: %v\n%s", what, err, testutil.Tail(string(out), 40))
		}
		return string(out), el
	}
	first, el := run("make build")
	t.Logf("first make build (%s):\n%s", el.Round(time.Second), testutil.Tail(first, 30))
	for _, w := range []string{"deps/go.sh: installing golang-go", "through the Go module proxy", "deps/go.sh: go" + string(want) + " installed in " + goroot} {
		if !strings.Contains(first, w) {
			t.Errorf("first run does not say %q", w)
		}
	}
	for _, b := range []string{"cpsimage", "cpsdirector"} {
		if st, err := os.Stat(filepath.Join(src, "bin", b)); err != nil || st.Mode()&0o111 == 0 {
			t.Errorf("make build made no bin/%s: %v", b, err)
		}
	}
	if out, err := exec.Command("chroot", tree, "/src/bin/cpsimage", "help").CombinedOutput(); err != nil {
		t.Errorf("the built cpsimage does not run: %v\n%s", err, out)
	}
	deps, el := run("scripts/deps.sh base raw")
	installing := regexp.MustCompile(`deps.sh: installing (.*)`).FindStringSubmatch(deps)
	newly := regexp.MustCompile(`(\d+) newly installed`).FindStringSubmatch(deps)
	if installing == nil || newly == nil {
		t.Fatalf("deps.sh base raw installed nothing:\n%s", testutil.Tail(deps, 20))
	}
	t.Logf("deps.sh base raw (%s): %d listed packages missing, %s packages installed with their dependencies", el.Round(time.Second), len(strings.Fields(installing[1])), newly[1])

	// Idempotent: the second run finds everything, installs nothing.
	second, el := run("make build && scripts/deps.sh base raw")
	t.Logf("second run (%s):\n%s", el.Round(time.Second), second)
	if !strings.Contains(second, "deps/go.sh: go"+string(want)+" at "+goroot+"/bin/go") {
		t.Errorf("second run does not use the installed toolchain")
	}
	if !regexp.MustCompile(`deps.sh: all \d+ packages installed`).MatchString(second) {
		t.Errorf("second run does not find the packages installed")
	}
	for _, w := range []string{"installing", "fetching", "apt-get"} {
		if strings.Contains(second, w) {
			t.Errorf("second run says %q: not idempotent", w)
		}
	}
}
