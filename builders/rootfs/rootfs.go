// Package rootfs makes a Debian root filesystem tree with mmdebstrap for the
// image builders: the distribution, the package list, a package cache shared
// between builds, and the template's provisioners run as customize hooks.
package rootfs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"

	"github.com/conpaas/cps/internal/progress"
	"github.com/conpaas/cps/plan"
)

// DistributionDefaults fills what a template's distribution block (or its
// absence) leaves out with what mmdebstrap is then run with, so the plan
// shows it: Debian bookworm from deb.debian.org, main, variant important.
func DistributionDefaults(d *plan.Distribution) {
	d.Suite = orDefault(d.Suite, "bookworm")
	d.Mirror = orDefault(d.Mirror, "http://deb.debian.org/debian")
	if len(d.Components) == 0 {
		d.Components = []string{"main"}
	}
	d.Variant = orDefault(d.Variant, "important")
}

// bootstrapArgs is the mmdebstrap command line for img's distribution into
// dir. Provisioners become mmdebstrap customize hooks: they run after the
// packages are installed, with the root filesystem's /proc and /dev set up
// by mmdebstrap, shell ones inside the chroot (under qemu-user for a
// foreign architecture).
func bootstrapArgs(img *plan.Image, dir, cacheDir string, extra []string, early ...File) ([]string, error) {
	d := img.Distribution
	suite := orDefault(d.Suite, "bookworm")
	mirror := orDefault(d.Mirror, "http://deb.debian.org/debian")
	comps := d.Components
	if len(comps) == 0 {
		comps = []string{"main"}
	}
	pkgs := append(append([]string{}, extra...), d.Packages...)
	sort.Strings(pkgs)
	args := []string{
		"--arch=" + img.Arch,
		"--variant=" + orDefault(d.Variant, "important"),
		"--components=" + strings.Join(comps, ","),
		"--include=" + strings.Join(dedup(pkgs), ","),
		// Not needed on the card, and they differ from build to build.
		"--dpkgopt=path-exclude=/usr/share/doc/*",
		"--dpkgopt=path-include=/usr/share/doc/*/copyright",
		"--dpkgopt=path-exclude=/usr/share/man/*",
		// Mirrors and DNS fail now and then; apt retries with backoff (it
		// stays in the image's apt.conf.d, where it helps too).
		`--aptopt=Acquire::Retries "5"`,
	}
	if strings.ContainsAny(cacheDir, " \t\n'\"") {
		return nil, fmt.Errorf("package cache directory %q: mmdebstrap hooks cannot take a path with spaces or quotes; choose another cache_dir", cacheDir)
	}
	if cacheDir != "" {
		// Reuse downloaded .debs between builds (mmdebstrap's documented
		// sync-in/sync-out recipe).
		args = append(args,
			"--skip=essential/unlink",
			`--setup-hook=mkdir -p "$1"/var/cache/apt/archives/`,
			// Special hooks are split on white space, not shell-parsed.
			`--setup-hook=sync-in `+cacheDir+` /var/cache/apt/archives/`,
			`--customize-hook=sync-out /var/cache/apt/archives `+cacheDir,
			`--customize-hook=rm -f "$1"/var/cache/apt/archives/*.deb`,
		)
	}
	for _, f := range early {
		h, err := earlyHook(f)
		if err != nil {
			return nil, fmt.Errorf("image %q: %w", img.Name, err)
		}
		args = append(args, h)
	}
	shell := false
	for _, p := range img.Provisioners {
		shell = shell || p.Type == "shell"
	}
	if shell {
		// Provisioners may need DNS (apt-get install, curl), but the image's
		// /etc/resolv.conf can be a link into /run that does not exist in
		// the chroot (systemd-resolved's stub): lend them the host's, and
		// put the image's back afterwards unless a provisioner wrote its own.
		args = append(args, `--customize-hook=if [ -e "$1/etc/resolv.conf" ] || [ -L "$1/etc/resolv.conf" ]; then mv "$1/etc/resolv.conf" "$1/etc/resolv.conf.cps-saved"; fi; cp /etc/resolv.conf "$1/etc/resolv.conf"`)
	}
	for i, p := range img.Provisioners {
		h, err := provisionerHook(img, i, p)
		if err != nil {
			return nil, err
		}
		args = append(args, h...)
	}
	if shell {
		args = append(args, `--customize-hook=if cmp -s /etc/resolv.conf "$1/etc/resolv.conf"; then rm -f "$1/etc/resolv.conf"; if [ -e "$1/etc/resolv.conf.cps-saved" ] || [ -L "$1/etc/resolv.conf.cps-saved" ]; then mv "$1/etc/resolv.conf.cps-saved" "$1/etc/resolv.conf"; fi; else rm -f "$1/etc/resolv.conf.cps-saved"; fi`)
	}
	args = append(args, suite, dir, mirror)
	return args, nil
}

// File is a file the builder puts in the tree before the packages beyond
// the Essential ones are installed, so their maintainer scripts see it:
// an initramfs-tools hook or a modprobe.d file must be there when
// linux-image's postinst makes the initramfs.
type File struct {
	Path string // absolute, inside the tree
	Mode os.FileMode
	Data []byte
}

// earlyHook is the mmdebstrap essential hook writing f (mmdebstrap runs it
// after the Essential packages, before the --include ones). Its content is
// part of the command line, so the tree cache's key covers it.
func earlyHook(f File) (string, error) {
	if !strings.HasPrefix(f.Path, "/") || strings.ContainsAny(f.Path, " \t\n'\"$`\\") || strings.Contains(f.Path, "..") {
		return "", fmt.Errorf("early file %q: not a plain absolute path", f.Path)
	}
	dst := `"$1"` + f.Path
	return fmt.Sprintf(`--essential-hook=mkdir -p "$(dirname %s)" && printf %%s %s > %s && chmod %o %s`, dst, shq(string(f.Data)), dst, f.Mode.Perm(), dst), nil
}

// provisionerHook turns one provisioner into mmdebstrap hook arguments. In
// mmdebstrap's root mode a hook is a host shell command with the root
// directory in $1.
func provisionerHook(img *plan.Image, i int, p plan.Provisioner) ([]string, error) {
	env := map[string]string{}
	for k, v := range img.Env {
		env[k] = v
	}
	for k, v := range p.Env {
		env[k] = v
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var envArgs []string
	for _, k := range keys {
		envArgs = append(envArgs, shq(k+"="+env[k]))
	}
	switch p.Type {
	case "file":
		if p.Source == "" || !strings.HasPrefix(p.Destination, "/") {
			return nil, fmt.Errorf("image %q: file provisioner %d needs source and an absolute destination", img.Name, i+1)
		}
		if _, err := os.Stat(p.Source); err != nil {
			return nil, fmt.Errorf("image %q: file provisioner %d: %w", img.Name, i+1, err)
		}
		dst := `"$1"` + shq(p.Destination)
		cmd := `mkdir -p "$(dirname ` + dst + `)" && cp -a --no-preserve=ownership ` + shq(p.Source) + ` ` + dst
		if p.Mode != "" {
			if _, err := strconv.ParseUint(p.Mode, 8, 32); err != nil {
				return nil, fmt.Errorf("image %q: file provisioner %d: mode %q is not octal", img.Name, i+1, p.Mode)
			}
			cmd += ` && chmod ` + p.Mode + ` ` + dst
		}
		if p.Catalogue != "" {
			// The copied image's catalogue entry, beside it.
			cmd += ` && cp ` + shq(p.Catalogue) + ` "$1"` + shq(p.Destination+".catalogue.json")
		}
		return []string{"--customize-hook=" + cmd}, nil
	case "shell":
		var script string
		switch {
		case p.Script != "":
			b, err := os.ReadFile(p.Script)
			if err != nil {
				return nil, fmt.Errorf("image %q: shell provisioner %d: %w", img.Name, i+1, err)
			}
			script = string(b)
		case len(p.Inline) > 0:
			script = "set -e\n" + strings.Join(p.Inline, "\n") + "\n"
		default:
			return nil, fmt.Errorf("image %q: shell provisioner %d has neither inline nor script", img.Name, i+1)
		}
		// The script goes in through a file so no quoting can break it.
		f := fmt.Sprintf("/tmp/cps-provision-%d", i+1)
		return []string{
			"--customize-hook=printf %s " + shq(script) + ` > "$1"` + f,
			"--customize-hook=chroot \"$1\" env " + strings.Join(envArgs, " ") + " DEBIAN_FRONTEND=noninteractive /bin/sh " + f,
			`--customize-hook=rm -f "$1"` + f,
		}, nil
	}
	return nil, fmt.Errorf("image %q: provisioner %d: unknown type %q; use shell or file", img.Name, i+1, p.Type)
}

// Options are how a builder has the tree made; the binary decides them
// (this package reads no environment).
type Options struct {
	// UI is where mmdebstrap's progress goes; nil reports nothing.
	UI *progress.UI
	// NoTreeCache bootstraps afresh even when the package cache is set
	// (the packages are still cached); cpsimage sets it from
	// $CPS_NO_TREE_CACHE.
	NoTreeCache bool
}

// Bootstrap makes the root filesystem tree of img in dir (which must not
// exist or be empty) with mmdebstrap: img's distribution and packages plus
// extra (what the builder itself needs, e.g. a kernel), then the
// provisioners. Downloaded .debs are kept in Distribution.CacheDir so a
// rebuild fetches nothing. epoch > 0 is passed as SOURCE_DATE_EPOCH.
// early are files written into the tree before the --include packages are
// installed.
func Bootstrap(ctx context.Context, o Options, img *plan.Image, dir string, extra []string, epoch int64, early ...File) error {
	return cachedBootstrap(ctx, o, img, dir, extra, epoch, early)
}

// bootstrap runs mmdebstrap.
func bootstrap(ctx context.Context, ui *progress.UI, img *plan.Image, dir string, extra []string, epoch int64, early []File) error {
	cacheDir := img.Distribution.CacheDir
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return fmt.Errorf("mmdebstrap is not installed; run scripts/deps.sh (or apt-get install mmdebstrap qemu-user-static binfmt-support arch-test)")
	}
	if cacheDir != "" {
		if err := os.MkdirAll(cacheDir, 0o755); err != nil {
			return fmt.Errorf("package cache: %w", err)
		}
	}
	args, err := bootstrapArgs(img, dir, cacheDir, extra, early...)
	if err != nil {
		return err
	}
	ui.Logf("rootfs: mmdebstrap %s %s (%s) into %s", orDefault(img.Distribution.Suite, "bookworm"), img.Arch, orDefault(img.Distribution.Variant, "important"), dir)
	// mmdebstrap (root mode) mounts /proc, /sys and /dev inside the tree
	// while maintainer scripts run. In a private mount namespace those
	// mounts are never seen by the host and vanish with the process, even
	// when the build is killed; the image itself is made without mounts.
	// --verbose: apt's and dpkg's lines, which mmProgress counts (without
	// it mmdebstrap shows progress on a terminal only, and cps captures
	// its output). Not part of bootstrapArgs: it does not shape the tree.
	args = append([]string{"--verbose"}, args...)
	name := "mmdebstrap"
	if privateMounts() {
		args = append([]string{"--mount", "--propagation", "private", "--", "mmdebstrap"}, args...)
		name = "unshare"
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = os.Environ()
	if epoch > 0 {
		cmd.Env = append(cmd.Env, "SOURCE_DATE_EPOCH="+strconv.FormatInt(epoch, 10))
	}
	var out bytes.Buffer
	prog := &mmProgress{ui: ui, out: &out}
	cmd.Stdout, cmd.Stderr = prog, prog
	err = cmd.Run()
	prog.finish()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if why := diagnose(out.String(), img); why != "" {
			return fmt.Errorf("%s (mmdebstrap: %v)", why, err)
		}
		msg := tail(out.String(), 25)
		if strings.Contains(msg, "arch-test") || strings.Contains(msg, "cannot execute") || strings.Contains(msg, "Exec format error") {
			msg += "\n(a foreign-architecture bootstrap needs qemu-user-static and binfmt_misc: run scripts/deps.sh, which registers them)"
		}
		return fmt.Errorf("mmdebstrap: %w:\n%s", err, msg)
	}
	return nil
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func dedup(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// shq quotes s for a POSIX shell.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// diagnose turns the usual apt failures into one sentence saying what is
// wrong and what to do; "" when the output has none of them. The first apt
// error ("E:") is the cause; mmdebstrap's own wrap-up errors are skipped,
// and warnings apt recovered from by a retry (a DNS hiccup, say) must not
// hide a later failure, e.g. in a provisioner.
func diagnose(out string, img *plan.Image) string {
	d := img.Distribution
	mirror := orDefault(d.Mirror, "http://deb.debian.org/debian")
	lines := strings.Split(out, "\n")
	first := -1
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "E:") || strings.Contains(l, "mmdebstrap failed") || strings.HasPrefix(l, "E: setup failed") ||
			strings.HasPrefix(l, "E: command failed") || (strings.HasPrefix(l, "E: apt-get") && strings.HasSuffix(l, "failed")) {
			continue
		}
		first = i
		break
	}
	if first < 0 {
		return ""
	}
	network := func(l string) bool {
		for _, p := range []string{"Could not resolve", "Failed to fetch", "Connection failed", "Unable to connect",
			"Temporary failure resolving", "404  Not Found", "does not have a Release file", "no package lists"} {
			if strings.Contains(l, p) {
				return true
			}
		}
		return false
	}
	l := strings.TrimSpace(lines[first])
	switch {
	case strings.Contains(l, "Unable to locate package"):
		pkg := strings.TrimSpace(l[strings.Index(l, "Unable to locate package")+len("Unable to locate package"):])
		return fmt.Sprintf("image %q: package %q is not in %s (%s) at %s; fix the name in distribution.packages or add its component", img.Name, pkg, orDefault(d.Suite, "bookworm"), strings.Join(d.Components, ","), mirror)
	case network(l):
		return fmt.Sprintf("image %q: cannot download packages from %s (%s); check distribution.mirror and suite and the network", img.Name, mirror, l)
	case strings.Contains(l, "Some index files failed to download") || strings.Contains(l, "Unable to fetch some archives"):
		// The cause is on an Err:/W: line before it.
		for i := first - 1; i >= 0; i-- {
			if c := strings.TrimSpace(lines[i]); network(c) {
				return fmt.Sprintf("image %q: cannot download packages from %s (%s); check distribution.mirror and suite and the network", img.Name, mirror, c)
			}
		}
	}
	return ""
}

// privateMounts reports whether `unshare --mount` works here (it needs
// CAP_SYS_ADMIN, which root normally has).
func privateMounts() bool {
	return exec.Command("unshare", "--mount", "--propagation", "private", "true").Run() == nil
}

// Args is the mmdebstrap command line Bootstrap runs (for benchmarks that
// time mmdebstrap alone against a full build).
func Args(img *plan.Image, dir string, extra []string, early ...File) ([]string, error) {
	return bootstrapArgs(img, dir, img.Distribution.CacheDir, extra, early...)
}
