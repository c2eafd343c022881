package sdcard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/conpaas/cps/builders/plan"
	"github.com/conpaas/cps/internal/progress"
)

// This is a minimal mmdebstrap wrapper for the SD card's foreign-arch root
// filesystem. builders/rootfs (the raw image's) had not landed on main when
// this was written; when it does, Bootstrap should give way to it.

// BootPackages are what the boot partition is made from: the Pi firmware
// (non-free-firmware) and Debian's kernel for the architecture.
func BootPackages(arch string) []string {
	if arch == "armhf" {
		return []string{"raspi-firmware", "linux-image-armmp-lpae"}
	}
	return []string{"raspi-firmware", "linux-image-arm64"}
}

// bootstrapArgs is the mmdebstrap command line for img's distribution into
// dir. Provisioners become mmdebstrap customize hooks: they run after the
// packages are installed, with the root filesystem's /proc and /dev set up
// by mmdebstrap, shell ones inside the chroot (under qemu-user for a
// foreign architecture).
func bootstrapArgs(img *plan.Image, dir, cacheDir string) ([]string, error) {
	d := img.Distribution
	suite := orDefault(d.Suite, "bookworm")
	mirror := orDefault(d.Mirror, "http://deb.debian.org/debian")
	comps := d.Components
	if len(comps) == 0 {
		comps = []string{"main", "non-free-firmware"}
	}
	hasNFF := false
	for _, c := range comps {
		hasNFF = hasNFF || c == "non-free-firmware"
	}
	if !hasNFF {
		return nil, fmt.Errorf("image %q: the Pi firmware (raspi-firmware) is in the non-free-firmware component; add it to distribution components", img.Name)
	}
	pkgs := append(BootPackages(img.Arch), d.Packages...)
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
	for i, p := range img.Provisioners {
		h, err := provisionerHook(img, i, p)
		if err != nil {
			return nil, err
		}
		args = append(args, h...)
	}
	args = append(args, suite, dir, mirror)
	return args, nil
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

// Bootstrap makes the root filesystem tree of img in dir (which must not
// exist or be empty) with mmdebstrap. epoch > 0 is passed as
// SOURCE_DATE_EPOCH.
func Bootstrap(ctx context.Context, img *plan.Image, dir, cacheDir string, epoch int64) error {
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return fmt.Errorf("mmdebstrap is not installed; run scripts/deps.sh (or apt-get install mmdebstrap qemu-user-static binfmt-support arch-test)")
	}
	if cacheDir != "" {
		if err := os.MkdirAll(cacheDir, 0o755); err != nil {
			return fmt.Errorf("package cache: %w", err)
		}
	}
	args, err := bootstrapArgs(img, dir, cacheDir)
	if err != nil {
		return err
	}
	progress.Logf("sdcard: mmdebstrap %s %s (%s) into %s", orDefault(img.Distribution.Suite, "bookworm"), img.Arch, orDefault(img.Distribution.Variant, "important"), dir)
	cmd := exec.CommandContext(ctx, "mmdebstrap", args...)
	cmd.Env = os.Environ()
	if epoch > 0 {
		cmd.Env = append(cmd.Env, "SOURCE_DATE_EPOCH="+strconv.FormatInt(epoch, 10))
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
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

var errNoKernel = errors.New("no kernel in the root filesystem")

// BootFiles fills bootDir from the root filesystem tree: the Pi firmware
// (bootcode.bin, start*.elf, fixup*.dat), the kernel, its initramfs if
// there is one, the Pi device trees, and config.txt and cmdline.txt with
// the root filesystem found by PARTUUID. It returns the kernel version.
func BootFiles(rootDir, bootDir, arch, rootPartUUID, extraCmdline string) (string, error) {
	fw := filepath.Join(rootDir, "usr/lib/raspi-firmware")
	es, err := os.ReadDir(fw)
	if err != nil {
		return "", fmt.Errorf("the Pi firmware is missing from the root filesystem (%v); raspi-firmware must be installed", err)
	}
	for _, e := range es {
		if err := copyFile(filepath.Join(fw, e.Name()), filepath.Join(bootDir, e.Name())); err != nil {
			return "", err
		}
	}
	kernels, _ := filepath.Glob(filepath.Join(rootDir, "boot/vmlinuz-*"))
	if len(kernels) == 0 {
		return "", fmt.Errorf("%w: install linux-image-%s", errNoKernel, map[string]string{"arm64": "arm64", "armhf": "armmp-lpae"}[arch])
	}
	sort.Strings(kernels)
	kpath := kernels[len(kernels)-1]
	ver := strings.TrimPrefix(filepath.Base(kpath), "vmlinuz-")
	if err := copyFile(kpath, filepath.Join(bootDir, "vmlinuz")); err != nil {
		return "", err
	}
	initrd := ""
	if _, err := os.Stat(filepath.Join(rootDir, "boot/initrd.img-"+ver)); err == nil {
		if err := copyFile(filepath.Join(rootDir, "boot/initrd.img-"+ver), filepath.Join(bootDir, "initrd.img")); err != nil {
			return "", err
		}
		initrd = "initramfs initrd.img followkernel\n"
	}
	dtbDir := filepath.Join(rootDir, "usr/lib/linux-image-"+ver, "broadcom")
	if arch == "armhf" {
		dtbDir = filepath.Join(rootDir, "usr/lib/linux-image-"+ver)
	}
	dtbs, _ := filepath.Glob(filepath.Join(dtbDir, "bcm2*.dtb"))
	if len(dtbs) == 0 {
		return "", fmt.Errorf("no Raspberry Pi device trees (bcm2*.dtb) in %s", dtbDir)
	}
	for _, d := range dtbs {
		if err := copyFile(d, filepath.Join(bootDir, filepath.Base(d))); err != nil {
			return "", err
		}
	}
	// What Debian's raspi-firmware kernel hook writes, with our file names.
	cfg := "# Written by cps (cpsimage build); Debian raspi-firmware layout.\n"
	if arch == "arm64" {
		cfg += "arm_64bit=1\n"
	}
	cfg += "enable_uart=1\nupstream_kernel=1\n\nkernel=vmlinuz\n" + initrd + "\n[pi3]\naudio_pwm_mode=2\n\n[all]\n"
	cmdline := "console=tty0 console=ttyS1,115200 root=PARTUUID=" + rootPartUUID + " rw fsck.repair=yes net.ifnames=0 rootwait"
	if extraCmdline != "" {
		cmdline += " " + extraCmdline
	}
	if err := os.WriteFile(filepath.Join(bootDir, "config.txt"), []byte(cfg), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(bootDir, "cmdline.txt"), []byte(cmdline+"\n"), 0o644); err != nil {
		return "", err
	}
	return ver, nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("boot files: %w", err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		return fmt.Errorf("boot files: %w", err)
	}
	return nil
}
