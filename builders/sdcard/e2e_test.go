//go:build e2e

package sdcard

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/plan"
)

// repoFile finds a file relative to the repository root.
func repoFile(t *testing.T, rel string) string {
	_, here, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(here), "..", "..", rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBuildComputeNode builds the real ConPaaS Raspberry Pi image: a
// nova-compute + cinder-volume LXC host for a controller on 172.16.0.0/24,
// bootstrapped for arm64 under qemu-user (slow: tens of minutes).
func TestBuildComputeNode(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "mmdebstrap")
	testutil.RequireTool(t, "qemu-aarch64-static")
	out := filepath.Join(t.TempDir(), "conpaas-rpi.img")
	img := plan.Image{
		Name: "rpi", Kind: plan.KindSDCard, Arch: "arm64", Output: out,
		Distribution: plan.Distribution{
			Variant:    "minbase",
			Components: []string{"main", "non-free-firmware"},
			Packages: []string{"systemd-sysv", "nova-compute-lxc", "cinder-volume", "lxc", "bridge-utils",
				"lvm2", "tgt", "open-iscsi", "openssh-server", "ifupdown", "ca-certificates"},
		},
		Env:          map[string]string{"CONTROLLER_IP": "172.16.0.1", "NODE_IP": "172.16.0.11"},
		Provisioners: []plan.Provisioner{{Type: "shell", Script: repoFile(t, "scripts/sdcard/compute-node.sh")}},
		Checksums:    []string{"md5"},
	}
	b, _ := builders.Get(plan.KindSDCard)
	res, err := b.Build(t.Context(), &plan.Plan{InputsDigest: "e2e"}, &img, builders.Options{CacheDir: testutil.CacheDir(), SourceDateEpoch: 1700000000})
	if err != nil {
		t.Fatal(err)
	}
	parts := checkImage(t, out, plan.SDCardSize)
	t.Logf("data %d bytes, written %d bytes", res.DataBytes, res.WrittenBytes)
	nova := debugfsCat(t, out, parts[1].start, "/etc/nova/nova.conf")
	for _, want := range []string{"virt_type = lxc", "rabbit://openstack:openstack@controller", "my_ip = 172.16.0.11"} {
		if !strings.Contains(nova, want) {
			t.Errorf("nova.conf lacks %q", want)
		}
	}
	if hosts := debugfsCat(t, out, parts[1].start, "/etc/hosts"); !strings.Contains(hosts, "172.16.0.1\tcontroller") {
		t.Errorf("/etc/hosts: %s", hosts)
	}
	if c := debugfsCat(t, out, parts[1].start, "/etc/cinder/cinder.conf"); !strings.Contains(c, "volume_group = cinder-volumes") {
		t.Error("cinder.conf not configured")
	}
	if cfg := mtype(t, out, parts[0].start, "/config.txt"); !strings.Contains(cfg, "initramfs initrd.img followkernel") {
		t.Errorf("config.txt has no initramfs line (no initrd built?):\n%s", cfg)
	}
}

// TestBootRaspi3b boots a minimal image in qemu-system-aarch64 -M raspi3b
// until the readiness marker appears on the serial console. QEMU wants an
// SD card whose size is a power of two, so the image is first grown to
// 32 GiB with Resize (which is itself under test here).
func TestBootRaspi3b(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "qemu-system-aarch64")
	dir := t.TempDir()
	out := filepath.Join(dir, "rpi.img")
	marker := filepath.Join(dir, "ready.sh")
	os.WriteFile(marker, []byte(`#!/bin/sh
set -e
cat > /etc/systemd/system/cps-ready.service <<'EOT'
[Unit]
Description=cps readiness marker
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo CPS-RPI-READY > /dev/kmsg; echo CPS-RPI-READY > /dev/console || true'
[Install]
WantedBy=multi-user.target
EOT
mkdir -p /etc/systemd/system/multi-user.target.wants
ln -sf /etc/systemd/system/cps-ready.service /etc/systemd/system/multi-user.target.wants/
`), 0o755)
	img := plan.Image{
		Name: "rpi", Kind: plan.KindSDCard, Arch: "arm64", Output: out,
		Distribution: plan.Distribution{Variant: "minbase", Components: []string{"main", "non-free-firmware"}, Packages: []string{"systemd-sysv"}},
		Provisioners: []plan.Provisioner{{Type: "shell", Script: marker}},
	}
	b, _ := builders.Get(plan.KindSDCard)
	if _, err := b.Build(t.Context(), &plan.Plan{InputsDigest: "boot"}, &img, builders.Options{CacheDir: testutil.CacheDir(), SourceDateEpoch: 1700000000}); err != nil {
		t.Fatal(err)
	}
	if _, err := Resize(t.Context(), nil, out, 32<<30, 0); err != nil {
		t.Fatal(err)
	}
	parts := checkImage(t, out, 32<<30)
	for _, f := range []string{"vmlinuz", "initrd.img", "bcm2837-rpi-3-b.dtb", "cmdline.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(mtype(t, out, parts[0].start, "/"+f)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline.txt"))
	// QEMU's raspi3b serial port is the PL011 (ttyAMA0); the real Pi 3
	// console is the mini UART (ttyS1) the image's cmdline.txt names. The
	// marker goes to the kernel log (printed on the console): the Pi 3
	// device tree gives the PL011 to Bluetooth (serdev), so there is no
	// /dev/ttyAMA0 node to write to (the first run wrote a regular file of
	// that name on devtmpfs).
	appendArgs := strings.Replace(strings.TrimSpace(string(cmdline)), "console=ttyS1,115200", "console=ttyAMA0,115200", 1)
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-aarch64", "-M", "raspi3b", "-m", "1G", "-nographic", "-no-reboot",
		"-kernel", filepath.Join(dir, "vmlinuz"), "-initrd", filepath.Join(dir, "initrd.img"),
		"-dtb", filepath.Join(dir, "bcm2837-rpi-3-b.dtb"), "-append", appendArgs,
		"-drive", "file="+out+",if=sd,format=raw", "-serial", "mon:stdio",
		"-nic", "none") // the boot needs no network: the guest gets none
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	var last []string
	for sc.Scan() {
		l := sc.Text()
		last = append(last, l)
		if len(last) > 40 {
			last = last[1:]
		}
		if strings.Contains(l, "CPS-RPI-READY") {
			t.Log("booted to the readiness marker")
			return
		}
	}
	t.Fatalf("no readiness marker (%v); last console lines:\n%s", ctx.Err(), fmt.Sprint(strings.Join(last, "\n")))
}
