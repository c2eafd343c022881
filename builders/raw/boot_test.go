package raw

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/images/ptable"
	"github.com/conpaas/cps/internal/testutil"
	"github.com/conpaas/cps/plan"
	"github.com/conpaas/cps/test/qemu"
)

// smallImage is the default test's image: the real builder with a minimal
// package set, booting under BIOS and UEFI.
func smallImage(out string) *plan.Image {
	return &plan.Image{
		Name: "conpaas-test", Kind: plan.KindRaw, Arch: "amd64", Version: "test",
		Output: out, Size: 1536 << 20,
		// nginx, as conpaas.pkr.hcl has it: installed, but neither started
		// at boot nor serving its default site.
		Distribution: plan.Distribution{
			Suite: "bookworm", Mirror: mirror(), Components: []string{"main"}, Variant: "minbase",
			Packages: []string{"nginx"},
		},
		Bootloader: plan.Bootloader{Type: "grub", BIOS: true, UEFI: true, Cmdline: "console=ttyS0,115200n8", Timeout: 0},
		Checksums:  []string{"md5", "sha256"},
		// Provisioners can resolve names although the image's resolv.conf
		// is systemd-resolved's stub link, which points nowhere in a chroot.
		Provisioners: []plan.Provisioner{{Type: "shell", Inline: []string{
			"host=$(echo " + mirror() + " | sed -e 's|^[a-z]*://||' -e 's|[:/].*||')",
			`getent hosts "$host" || { echo "provisioner: cannot resolve $host" >&2; exit 1; }`,
		}}},
	}
}

func mirror() string {
	if m := os.Getenv("CPS_MIRROR"); m != "" {
		return m
	}
	return "http://deb.debian.org/debian"
}

// TestBuildAndBoot is the proof that the raw builder works: it builds a
// small image with mmdebstrap, checks it with sfdisk and e2fsck, and boots
// it under QEMU (TCG) with SeaBIOS and with OVMF until the contextualization
// service prints its readiness marker on the serial console.
func TestBuildAndBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and boots an image (minutes)")
	}
	testutil.RequireRoot(t)
	for _, tool := range []string{"mmdebstrap", "mkfs.ext4", "mkfs.fat", "mcopy", "grub-mkimage", "qemu-system-x86_64", "sfdisk", "e2fsck"} {
		testutil.RequireTool(t, tool)
	}
	ctx := context.Background()
	dir := t.TempDir()
	img := smallImage(filepath.Join(dir, "conpaas.img"))
	// The template loader runs the kind's Prepare (defaults: the bios,
	// esp and root partitions); this image is not from a template.
	if err := Prepare(img); err != nil {
		t.Fatal(err)
	}
	p := &plan.Plan{InputsDigest: "test-digest", Images: []plan.Image{*img}}
	start := time.Now()
	res, err := Builder{}.Build(ctx, p, img, builders.Options{CacheDir: testutil.CacheDir(), SourceDateEpoch: 1700000000})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s in %s: %d MiB data of %d MiB", res.Path, time.Since(start).Round(time.Second), res.DataBytes>>20, img.Size>>20)

	st, err := os.Stat(res.Path)
	if err != nil || st.Size() != img.Size {
		t.Fatalf("image size = %v (%v), want %d", st, err, img.Size)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(left) != 0 {
		t.Errorf("build left temporary files: %v", left)
	}
	// The checksums returned are those of the file.
	sums, err := checksum.File(ctx, res.Path, checksum.Options{Algos: []checksum.Algo{checksum.MD5}})
	if err != nil || sums.Get(checksum.MD5) != res.Sums.Get(checksum.MD5) {
		t.Errorf("md5 of the file %s, builder said %s (%v)", sums.Get(checksum.MD5), res.Sums.Get(checksum.MD5), err)
	}

	// The partition table, read by util-linux.
	out, err := exec.Command("sfdisk", "--dump", res.Path).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk --dump: %v\n%s", err, out)
	}
	t.Logf("sfdisk --dump:\n%s", out)
	for _, want := range []string{"label: gpt", "type=21686148-6449-6E6F-744E-656564454649", "type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "type=0FC63DAF-8483-4772-8E79-3D69D8477DE4"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("sfdisk --dump lacks %q", want)
		}
	}
	// The root filesystem, checked by e2fsck through the offset syntax.
	f, _ := os.Open(res.Path)
	_, parts, err := ptable.Read(f)
	f.Close()
	if err != nil || len(parts) != 3 {
		t.Fatalf("ReadTable: %v %v", parts, err)
	}
	rootDev := res.Path + "?offset=" + itoa(parts[2].Start)
	if out, err := exec.Command("e2fsck", "-fn", rootDev).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	fstab, _ := exec.Command("debugfs", "-R", "cat /etc/fstab", rootDev).Output()
	if !strings.Contains(string(fstab), "UUID=") || !strings.Contains(string(fstab), "\t/\text4") {
		t.Errorf("fstab does not mount / by UUID:\n%s", fstab)
	}
	// The ESP must not hold the boot hostage: without nofail a slow udev
	// (seen on a loaded CI host) sent the VM to emergency mode.
	if !regexp.MustCompile(`(?m)^UUID=\S+\t/boot/efi\tvfat\t\S*\bnofail\b`).Match(fstab) {
		t.Errorf("fstab does not mount /boot/efi with nofail:\n%s", fstab)
	}
	// The image keeps its own resolv.conf (the resolved stub link), not the
	// host's copy lent to the provisioners.
	if link, _ := exec.Command("debugfs", "-R", "stat /etc/resolv.conf", rootDev).Output(); !strings.Contains(string(link), "Type: symlink") ||
		!strings.Contains(string(link), "stub-resolv.conf") {
		t.Errorf("/etc/resolv.conf is not the systemd-resolved stub link:\n%s", link)
	}
	espDev := testutil.Extract(t, res.Path, parts[1].Start, parts[1].End-parts[1].Start)
	if out, err := exec.Command("fsck.vfat", "-n", espDev).CombinedOutput(); err != nil {
		t.Errorf("fsck.vfat -n: %v\n%s", err, out)
	}

	// The initramfs has fsck: the builder's hook put it there (the boot
	// below shows it running).
	if ls, err := exec.Command("debugfs", "-R", "ls -l /etc/initramfs-tools/hooks", rootDev).Output(); err != nil || !strings.Contains(string(ls), "cps-fsck") {
		t.Errorf("no initramfs hook cps-fsck in the image (%v):\n%s", err, ls)
	}

	// Three boots at once (one vCPU each):
	//  - "pc+config-drive+reboot": SeaBIOS on an i440FX machine (which has
	//    a floppy controller), a config drive whose user data points at a
	//    director serving ConPaaS.tar.gz over HTTPS with its own CA (the
	//    VM's only forward), on a restricted user network. The user data
	//    first tries to leave the VM's network: nothing but the director
	//    may answer. The agent shows what listens and runs, then reboots
	//    the VM; contextualization must start it again.
	//  - "uefi+no-context": OVMF, no context at all.
	//  - "unrestricted-canary": the same gateway tries on plain -nic user
	//    (no restrict=on, what the tests used before): the canary must see
	//    them, or its silence in the first boot proves nothing.
	dir2, dir3 := t.TempDir(), t.TempDir()
	director := newFakeDirector(t)
	canary := qemu.NewCanary(t)
	drive := configDrive(t, ctx, dir2, director.userData(canary.Probe(directorGuestAddr)))
	// The unrestricted VM runs in a network namespace with only loopback,
	// where its canary listens: out of restrict=on, it still reaches
	// nothing but the canary.
	sandbox := qemu.NewSandbox(t)
	leaky := qemu.NewCanaryIn(t, sandbox)
	leakyDrive := configDrive(t, ctx, dir3, "#!/bin/bash\n"+leaky.GatewayProbe()+"echo CPS-PROBE-DONE > /dev/ttyS0\nexit 1\n")

	t.Run("boots", func(t *testing.T) {
		t.Run("pc+config-drive+reboot", func(t *testing.T) {
			t.Parallel()
			r, err := qemu.Boot(ctx, qemu.Options{Image: res.Path, Machine: "pc", Drives: []string{drive}, Reboot: true,
				NICs:   []qemu.NIC{{Forwards: []qemu.Forward{director.forward()}}},
				Marker: regexp.MustCompile(`fake php agent started: .*\(start 2\)`), Timeout: 40 * time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("agent started again after the reboot, %s after QEMU started; console (end):\n%s", r.Elapsed.Round(time.Second), lastLines(r.Console, 40))
			first, second, ok := strings.Cut(r.Console, "CPS-INSPECTED")
			if !ok {
				t.Fatalf("the agent did not inspect the VM before the reboot; console:\n%s", lastLines(r.Console, 80))
			}
			if !strings.Contains(first, "Welcome to") || !strings.Contains(second, "Welcome to") {
				t.Errorf("console does not show systemd starting twice")
			}
			// First boot: the context from the config drive, the agent
			// started, the director asked once.
			if !strings.Contains(first, "context from config drive") || !strings.Contains(first, "CONPAAS-READY role=agent type=php") {
				t.Errorf("first boot: no context from the config drive or no agent started:\n%s", lastLines(first, 60))
			}
			// Initramfs (scripts/functions, checkfs) says this before fsck runs;
			// without fsck in the initramfs it says "fsck not present".
			for _, c := range []struct{ what, console string }{{"first boot", first}, {"second boot", second}} {
				if !regexp.MustCompile(`(Will now check|Checking) root file system`).MatchString(c.console) || strings.Contains(c.console, "fsck not present") {
					t.Errorf("%s: the initramfs did not check the root filesystem", c.what)
				}
				// No floppy probe on a machine with a floppy controller.
				if strings.Contains(c.console, "dev fd0") {
					t.Errorf("%s: something probed the floppy: %s", c.what, grepLines(c.console, "fd0"))
				}
			}
			// One DHCP client, and nothing listens but sshd, resolved's
			// stub on the loopback and the DHCP client.
			g, err := parseGuestState(first)
			if err != nil {
				t.Fatal(err)
			}
			if c := g.dhcpClients(); len(c) != 1 || !strings.HasPrefix(c[0], "systemd-network ") {
				t.Errorf("DHCP clients %q, want systemd-networkd alone", c)
			}
			sshd := false
			for _, l := range g.listeners {
				t.Logf("listens: %v", l)
				sshd = sshd || l.comm == "sshd"
				if !allowedListener(l) {
					t.Errorf("the VM listens on %v; only sshd, resolved's stub on 127.0.0.53/54 and the DHCP client may", l)
				}
			}
			if !sshd {
				t.Errorf("sshd listens nowhere (the inspection missed it?)")
			}
			// After the reboot: the user data saved by the first boot ran
			// again, downloaded ConPaaS.tar.gz and started the agent (the
			// agent's "start 2" line ended the boot, so the marker that
			// follows it may not have come yet).
			if !strings.Contains(second, "context from the user data saved by an earlier boot") || !strings.Contains(second, "starting /root/ConPaaS/sbin/agent/php-cpsagent") {
				t.Errorf("second boot: the saved user data did not run again:\n%s", lastLines(second, 60))
			}
			if n := director.downloads.Load(); n != 2 {
				t.Errorf("the director served ConPaaS.tar.gz %d times, want 2 (one per boot)", n)
			}
			// The guest tried to leave its network on both boots: only the director answered.
			for _, p := range canary.Check(r.Console, directorGuestAddr) {
				t.Errorf("isolation: %s", p)
			}
		})
		t.Run("uefi+no-context", func(t *testing.T) {
			t.Parallel()
			r, err := qemu.Boot(ctx, qemu.Options{Image: res.Path, UEFI: true, Marker: regexp.MustCompile(`CONPAAS-READY`), Timeout: 20 * time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%q after %s; console (end):\n%s", r.Line, r.Elapsed.Round(time.Second), lastLines(r.Console, 40))
			if !strings.Contains(r.Line, "CONPAAS-READY no-context") {
				t.Fatalf("marker line %q, want no-context; console:\n%s", r.Line, lastLines(r.Console, 80))
			}
			if !strings.Contains(r.Console, "Welcome to") {
				t.Errorf("console shows no systemd start")
			}
			if !strings.Contains(r.Console, "no context: no /root/config.cfg") {
				t.Errorf("console does not explain the missing context")
			}
		})
		t.Run("unrestricted-canary", func(t *testing.T) {
			t.Parallel()
			r, err := qemu.Boot(ctx, qemu.Options{Image: res.Path, Drives: []string{leakyDrive}, NICs: []qemu.NIC{{Unrestricted: true}}, Sandbox: sandbox,
				Marker: regexp.MustCompile(`CPS-PROBE-DONE`), Timeout: 20 * time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			// Give a datagram that left just before the marker time to land.
			time.Sleep(2 * time.Second)
			got := strings.Join(leaky.Check(r.Console), "\n")
			t.Logf("on plain -nic user the canary reports:\n%s", got)
			port := strconv.Itoa(leaky.Port)
			for _, want := range []string{"the guest reached tcp 10.0.2.2:" + port, "the canary got a tcp connection", "the canary got a udp datagram \"cps-probe\\n\""} {
				if !strings.Contains(got, want) {
					t.Errorf("on an unrestricted network the canary missed %q; console:\n%s", want, grepLines(r.Console, "CPS-PROBE"))
				}
			}
		})
	})
}

// grepLines are the lines of s holding sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, strings.TrimRight(l, "\r"))
		}
	}
	return strings.Join(out, "\n")
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
