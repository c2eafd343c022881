package raw

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/plan"
)

// installPayload on a skeleton tree: the files the image needs are in
// place, units are enabled only when their package is there, root's empty
// password is locked and build-time identity is removed.
func TestInstallPayload(t *testing.T) {
	root := t.TempDir()
	mk := func(p, content string) {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	mk("etc/shadow", "root::19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")
	mk("lib/systemd/system/systemd-networkd.service", "")
	mk("lib/systemd/system/ssh.service", "")
	mk("lib/systemd/system/serial-getty@.service", "")
	mk("etc/ssh/ssh_host_ed25519_key", "secret")
	mk("etc/machine-id", "0123456789abcdef0123456789abcdef\n")
	// nginx and php-fpm as their packages leave them: enabled, with
	// nginx's default site.
	mk("etc/nginx/sites-available/default", "server { listen 80 default_server; }\n")
	os.Symlink("/etc/nginx/sites-available/default", filepath.Join(root, "etc/nginx/sites-enabled/default"))
	for _, u := range []string{"nginx.service", "php8.2-fpm.service"} {
		mk("lib/systemd/system/"+u, "")
		os.Symlink("/lib/systemd/system/"+u, filepath.Join(root, "etc/systemd/system/multi-user.target.wants", u))
	}
	img := &plan.Image{Name: "conpaas", Env: map[string]string{"DIRECTOR_URL": "https://director:5555", "BOOTSTRAP": "it's"}}
	mounts := []mount{{"1111-2222", "/boot/efi", "vfat", "umask=0077", 2}, {"abcd", "/", "ext4", "errors=remount-ro", 1}}
	if err := installPayload(root, img, mounts, "grub.cfg body\n"); err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if s := read("etc/fstab"); !strings.Contains(s, "UUID=abcd\t/\text4\terrors=remount-ro\t0\t1\n") || !strings.Contains(s, "UUID=1111-2222\t/boot/efi\tvfat") {
		t.Errorf("fstab:\n%s", s)
	}
	if read("etc/hostname") != "conpaas\n" || read("boot/grub/grub.cfg") != "grub.cfg body\n" {
		t.Error("hostname or grub.cfg not written")
	}
	if s := read("etc/shadow"); !strings.HasPrefix(s, "root:*:19000:") || !strings.Contains(s, "daemon:*:") {
		t.Errorf("root not locked:\n%s", s)
	}
	if s := read("root/config.cfg"); s != "[manager]\nBOOTSTRAP = it's\nDIRECTOR_URL = https://director:5555\n" {
		t.Errorf("config.cfg = %q", s)
	}
	if s := read("etc/machine-id"); s != "" {
		t.Errorf("machine-id kept: %q", s)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/ssh/ssh_host_ed25519_key")); err == nil {
		t.Error("build-time SSH host key shipped")
	}
	for link, want := range map[string]string{
		"multi-user.target.wants/conpaas-contextualize.service": "/etc/systemd/system/conpaas-contextualize.service",
		"multi-user.target.wants/systemd-networkd.service":      "/lib/systemd/system/systemd-networkd.service",
		"multi-user.target.wants/ssh.service":                   "/lib/systemd/system/ssh.service",
		"getty.target.wants/serial-getty@ttyS0.service":         "/lib/systemd/system/serial-getty@.service",
	} {
		got, err := os.Readlink(filepath.Join(root, "etc/systemd/system", link))
		if err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", link, got, err, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/systemd-resolved.service")); err == nil {
		t.Error("enabled systemd-resolved, which is not installed in the tree")
	}
	if fi, err := os.Stat(filepath.Join(root, "usr/local/sbin/conpaas-contextualize")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("contextualize script: %v %v", fi, err)
	}
	// The agent starts nginx and php-fpm itself; nothing serves :80.
	for _, p := range []string{"etc/systemd/system/multi-user.target.wants/nginx.service", "etc/systemd/system/multi-user.target.wants/php8.2-fpm.service", "etc/nginx/sites-enabled/default"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s is still there", p)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "etc/nginx/sites-available/default")); err != nil {
		t.Errorf("the available default site was removed too: %v", err)
	}
	if s := read("etc/systemd/resolved.conf.d/cps.conf"); !strings.Contains(s, "LLMNR=no") || !strings.Contains(s, "MulticastDNS=no") {
		t.Errorf("resolved.conf.d/cps.conf:\n%s", s)
	}
	if s := read("etc/systemd/network/80-conpaas-dhcp.network"); !strings.Contains(s, "DHCP=yes") || !strings.Contains(s, "LLMNR=no") {
		t.Errorf("80-conpaas-dhcp.network:\n%s", s)
	}
	// Contextualization runs at every boot: no condition skips it.
	if s := read("etc/systemd/system/conpaas-contextualize.service"); strings.Contains(s, "Condition") {
		t.Errorf("conpaas-contextualize.service is conditional:\n%s", s)
	}
}

// One network stack: a tree where ifupdown would run DHCP on a NIC that
// systemd-networkd already configures is refused with what to remove
// (conpaas.pkr.hcl had both until issue 19); loopback or static stanzas,
// or DHCP on a bridge, are not DHCP on a NIC networkd matches.
func TestOneNetworkStack(t *testing.T) {
	for _, tc := range []struct {
		name, file, content string
		err                 string
	}{
		{"old template", "etc/network/interfaces", "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n", "/etc/network/interfaces runs DHCP on eth0 with ifupdown"},
		{"interfaces.d, IPv6", "etc/network/interfaces.d/ens3", "iface ens3 inet6 auto\n", "/etc/network/interfaces.d/ens3 runs DHCP on ens3"},
		{"loopback only", "etc/network/interfaces", "auto lo\niface lo inet loopback\n", ""},
		{"static", "etc/network/interfaces", "iface eth1 inet static\n  address 192.168.56.10/24\n", ""},
		{"bridge", "etc/network/interfaces", "iface br0 inet dhcp\n", ""},
		{"no ifupdown", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			os.MkdirAll(filepath.Join(root, "etc"), 0o755)
			os.WriteFile(filepath.Join(root, "etc/shadow"), []byte("root:*:19000:0:99999:7:::\n"), 0o640)
			if tc.file != "" {
				os.MkdirAll(filepath.Dir(filepath.Join(root, tc.file)), 0o755)
				os.WriteFile(filepath.Join(root, tc.file), []byte(tc.content), 0o644)
			}
			err := InstallGuest(root, &plan.Image{Name: "conpaas"}, GuestOptions{})
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "remove the provisioner that writes it") {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

// A host image (contextualize = false, like the Nutshell) gets no
// contextualization service and no config.cfg, and its own hostname.
func TestInstallPayloadHost(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/shadow"), []byte("root::19000:0:99999:7:::\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	img := &plan.Image{Name: "nutshell-disk", Hostname: "conpaas-nutshell", NoContextualize: true, Env: map[string]string{"NUTSHELL_IP": "192.168.56.10"}}
	if err := installPayload(root, img, nil, "grub\n"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/hostname")); string(b) != "conpaas-nutshell\n" {
		t.Errorf("hostname = %q", b)
	}
	for _, p := range []string{"root/config.cfg", "usr/local/sbin/conpaas-contextualize", "etc/systemd/system/conpaas-contextualize.service",
		"etc/systemd/system/multi-user.target.wants/conpaas-contextualize.service"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s installed in a contextualize = false image", p)
		}
	}
	for _, p := range []string{"etc/systemd/system/multi-user.target.wants/conpaas-ssh-keygen.service", "etc/systemd/network/80-conpaas-dhcp.network"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
			t.Errorf("%s missing: %v", p, err)
		}
	}
}
