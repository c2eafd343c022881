package sdcard

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/conpaas/cps/builders/rootfs"
	"github.com/conpaas/cps/plan"
)

// BootPackages are what the boot partition is made from: the Pi firmware
// (non-free-firmware) and Debian's kernel for the architecture.
func BootPackages(arch string) []string {
	if arch == "armhf" {
		return []string{"raspi-firmware", "linux-image-armmp-lpae"}
	}
	return []string{"raspi-firmware", "linux-image-arm64"}
}

// Bootstrap makes the card's root filesystem tree in dir with the shared
// builders/rootfs (mmdebstrap, package and tree caches, provisioners), adding
// the Pi firmware and kernel; a foreign architecture runs its maintainer
// scripts under qemu-user. The firmware is in non-free-firmware, so that
// component is required (and the default).
func Bootstrap(ctx context.Context, o rootfs.Options, img *plan.Image, dir, cacheDir string, epoch int64) error {
	d := &img.Distribution
	if len(d.Components) == 0 {
		d.Components = []string{"main", "non-free-firmware"}
	}
	hasNFF := false
	for _, c := range d.Components {
		hasNFF = hasNFF || c == "non-free-firmware"
	}
	if !hasNFF {
		return fmt.Errorf("image %q: the Pi firmware (raspi-firmware) is in the non-free-firmware component; add it to distribution components", img.Name)
	}
	if d.Variant == "" {
		d.Variant = "important"
	}
	if cacheDir != "" {
		d.CacheDir = cacheDir
	}
	err := rootfs.Bootstrap(ctx, o, img, dir, BootPackages(img.Arch), epoch)
	if err != nil && (strings.Contains(err.Error(), "arch-test") || strings.Contains(err.Error(), "Exec format error")) {
		return fmt.Errorf("%w\n(a foreign-architecture bootstrap needs qemu-user-static and binfmt_misc: run scripts/deps.sh, which registers them)", err)
	}
	return err
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

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
