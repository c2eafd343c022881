package raw

import (
	"cmp"
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/conpaas/cps/plan"
)

//go:embed payload
var payload embed.FS

// payloadFiles maps the embedded payload to its place in the image.
var payloadFiles = []struct {
	src, dst      string
	mode          os.FileMode
	enable        bool // a systemd unit enabled for multi-user.target
	contextualize bool // left out of images with contextualize = false
}{
	{"payload/conpaas-contextualize", "/usr/local/sbin/conpaas-contextualize", 0o755, false, true},
	{"payload/conpaas-contextualize.service", "/etc/systemd/system/conpaas-contextualize.service", 0o644, true, true},
	{"payload/conpaas-ssh-keygen.service", "/etc/systemd/system/conpaas-ssh-keygen.service", 0o644, true, false},
	{"payload/80-conpaas-dhcp.network", "/etc/systemd/network/80-conpaas-dhcp.network", 0o644, false, false},
	{"payload/resolved-cps.conf", "/etc/systemd/resolved.conf.d/cps.conf", 0o644, false, false},
}

// earlyFiles are in the raw image's tree before the kernel is installed,
// so the initramfs made by linux-image's postinst has them: fsck for the
// root filesystem, and no floppy driver.
var earlyFiles = []struct {
	src, dst string
	mode     os.FileMode
}{
	{"payload/initramfs-fsck", "/etc/initramfs-tools/hooks/cps-fsck", 0o755},
	{"payload/no-floppy.conf", "/etc/modprobe.d/cps-no-floppy.conf", 0o644},
}

// agentStarted are units of the services' packages that a ConPaaS agent
// starts itself with its own configuration (nginx -c, php-fpm -y), as the
// original images had them (update-rc.d nginx disable): enabled at boot
// they would serve nginx's default site on :80 of every VM.
var agentStarted = []string{"nginx.service", "php*-fpm.service"}

// enableUnits are Debian's own units the image needs started at boot, as
// symlinks "wants directory -> unit" (what `systemctl enable` makes), so a
// VM has DHCP and DNS on its NICs, SSH and a login on the serial console.
// Units whose package the template left out are skipped.
var enableUnits = []struct{ wants, link, unit string }{
	{"multi-user.target.wants", "systemd-networkd.service", "systemd-networkd.service"},
	{"sockets.target.wants", "systemd-networkd.socket", "systemd-networkd.socket"},
	{"network-online.target.wants", "systemd-networkd-wait-online.service", "systemd-networkd-wait-online.service"},
	{"multi-user.target.wants", "systemd-resolved.service", "systemd-resolved.service"},
	{"multi-user.target.wants", "ssh.service", "ssh.service"},
	{"getty.target.wants", "serial-getty@ttyS0.service", "serial-getty@.service"},
}

// mount is one fstab line.
type mount struct {
	uuid, dir, fs, opts string
	pass                int
}

// installPayload makes the bootstrapped tree a ConPaaS VM: the guest
// payload (InstallGuest) with a login on the serial console, fstab by UUID
// and GRUB's configuration.
func installPayload(root string, img *plan.Image, mounts []mount, grubCfg string) error {
	if err := InstallGuest(root, img, GuestOptions{SerialGetty: true}); err != nil {
		return err
	}
	var fstab strings.Builder
	fstab.WriteString("# Written by cps (cpsimage build): filesystems by UUID.\n")
	for _, m := range mounts {
		fmt.Fprintf(&fstab, "UUID=%s\t%s\t%s\t%s\t0\t%d\n", m.uuid, m.dir, m.fs, m.opts, m.pass)
		if m.dir != "none" {
			if err := os.MkdirAll(filepath.Join(root, m.dir), 0o755); err != nil {
				return err
			}
		}
	}
	if err := WriteFile(root, "/etc/fstab", []byte(fstab.String()), 0o644); err != nil {
		return err
	}
	return WriteFile(root, "/boot/grub/grub.cfg", []byte(grubCfg), 0o644)
}

// GuestOptions say what the guest payload goes into.
type GuestOptions struct {
	// SerialGetty enables a login on ttyS0 (VMs); a container has no
	// serial port.
	SerialGetty bool
}

// InstallGuest makes a bootstrapped tree a ConPaaS guest, VM or container:
// the contextualization service, DHCP and DNS on every NIC, SSH, the
// hostname, no SSH host keys (each guest makes its own), an uninitialised
// machine-id and no build logs. The boot files (fstab, bootloader) are the
// builder's.
func InstallGuest(root string, img *plan.Image, o GuestOptions) error {
	for _, f := range payloadFiles {
		if f.contextualize && img.NoContextualize {
			continue
		}
		b, err := payload.ReadFile(f.src)
		if err != nil {
			return err
		}
		if err := WriteFile(root, f.dst, b, f.mode); err != nil {
			return err
		}
		if f.enable {
			link := filepath.Join(root, "etc/systemd/system/multi-user.target.wants", filepath.Base(f.dst))
			if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
				return err
			}
			os.Remove(link)
			if err := os.Symlink(f.dst, link); err != nil {
				return fmt.Errorf("enable %s: %w", filepath.Base(f.dst), err)
			}
		}
	}

	for _, u := range enableUnits {
		if u.wants == "getty.target.wants" && !o.SerialGetty {
			continue
		}
		target := "/lib/systemd/system/" + u.unit
		if _, err := os.Stat(filepath.Join(root, target)); err != nil {
			continue
		}
		link := filepath.Join(root, "etc/systemd/system", u.wants, u.link)
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return err
		}
		os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return fmt.Errorf("enable %s: %w", u.link, err)
		}
	}
	if !img.NoContextualize {
		// A services image; a host image (the Nutshell) keeps its units.
		for _, pat := range agentStarted {
			links, _ := filepath.Glob(filepath.Join(root, "etc/systemd/system/*.wants", pat))
			for _, l := range links {
				if err := os.Remove(l); err != nil {
					return fmt.Errorf("disable %s: %w", filepath.Base(l), err)
				}
			}
		}
		if err := os.Remove(filepath.Join(root, "etc/nginx/sites-enabled/default")); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove nginx's default site: %w", err)
		}
	}
	if err := oneNetworkStack(root, img); err != nil {
		return err
	}
	if err := lockRoot(root); err != nil {
		return err
	}

	if err := WriteFile(root, "/etc/hostname", []byte(cmp.Or(img.Hostname, img.Name)+"\n"), 0o644); err != nil {
		return err
	}
	// Context from the template's environment (DIRECTOR_URL, BOOTSTRAP,
	// TYPE) is baked in only when given; normally the cloud supplies it at
	// boot. Same "KEY = VALUE" form as the director writes.
	if len(img.Env) > 0 && !img.NoContextualize {
		keys := make([]string, 0, len(img.Env))
		for k := range img.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		// The director writes a [manager] section; an agent's is [agent].
		section := "manager"
		if strings.EqualFold(img.Env["ROLE"], "agent") {
			section = "agent"
		}
		b.WriteString("[" + section + "]\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "%s = %s\n", k, img.Env[k])
		}
		if err := WriteFile(root, "/root/config.cfg", []byte(b.String()), 0o600); err != nil {
			return err
		}
	}
	// Host keys made at build time would be shared by every VM.
	keys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		if err := os.Remove(k); err != nil {
			return err
		}
	}
	// systemd makes a machine-id on first boot when the file is empty.
	if err := WriteFile(root, "/etc/machine-id", nil, 0o444); err != nil {
		return err
	}
	os.Remove(filepath.Join(root, "var/lib/dbus/machine-id"))
	// Logs of the build, and caches that differ from build to build.
	for _, g := range []string{"var/log/*.log", "var/log/apt/*", "var/cache/ldconfig/aux-cache", "var/cache/debconf/*-old", "var/lib/dpkg/*-old", "var/cache/apt/*.bin"} {
		ms, _ := filepath.Glob(filepath.Join(root, g))
		for _, m := range ms {
			os.Remove(m)
		}
	}
	return nil
}

// ifupdownDHCP is an /etc/network/interfaces stanza running a DHCP client
// on a NIC ("iface eth0 inet dhcp", "iface ens3 inet6 dhcp").
var ifupdownDHCP = regexp.MustCompile(`(?m)^[ \t]*iface[ \t]+(\S+)[ \t]+inet6?[ \t]+(dhcp|auto)\b`)

// oneNetworkStack refuses a tree where ifupdown would run a DHCP client on
// a NIC that systemd-networkd already configures (80-conpaas-dhcp.network:
// every en* and eth*): two clients on eth0 fight over its lease.
func oneNetworkStack(root string, img *plan.Image) error {
	files := []string{filepath.Join(root, "etc/network/interfaces")}
	more, _ := filepath.Glob(filepath.Join(root, "etc/network/interfaces.d/*"))
	files = append(files, more...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, m := range ifupdownDHCP.FindAllStringSubmatch(string(b), -1) {
			if strings.HasPrefix(m[1], "en") || strings.HasPrefix(m[1], "eth") {
				return fmt.Errorf("image %q: %s runs DHCP on %s with ifupdown, and systemd-networkd already does on every NIC (two DHCP clients on one NIC); remove the provisioner that writes it, and ifupdown and isc-dhcp-client from the packages",
					img.Name, strings.TrimPrefix(f, root), m[1])
			}
		}
	}
	return nil
}

// WriteFile writes b to p inside the tree root, replacing what is there.
func WriteFile(root, p string, b []byte, mode os.FileMode) error {
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	os.Remove(full)
	if err := os.WriteFile(full, b, mode); err != nil {
		return fmt.Errorf("write %s into the image: %w", p, err)
	}
	return os.Chmod(full, mode)
}

// lockRoot makes sure root has no empty password: an image published for
// anyone to boot must not accept a password-less root login. Debian's
// default ("*") is already locked; a password a provisioner set is kept.
func lockRoot(root string) error {
	p := filepath.Join(root, "etc/shadow")
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("read /etc/shadow of the image: %w", err)
	}
	lines := strings.Split(string(b), "\n")
	changed := false
	for i, l := range lines {
		f := strings.Split(l, ":")
		if len(f) > 1 && f[0] == "root" && f[1] == "" {
			f[1] = "*"
			lines[i] = strings.Join(f, ":")
			changed = true
		}
	}
	if !changed {
		return nil
	}
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	return os.WriteFile(p, []byte(strings.Join(lines, "\n")), st.Mode().Perm())
}
