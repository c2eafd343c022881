package rootfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/plan"
)

func TestBootstrapArgs(t *testing.T) {
	script := filepath.Join(t.TempDir(), "s.sh")
	os.WriteFile(script, []byte("echo from-script\n"), 0o644)
	img := &plan.Image{
		Name: "t", Arch: "amd64",
		Distribution: plan.Distribution{Suite: "bookworm", Mirror: "http://127.0.0.1/debian",
			Components: []string{"main", "non-free-firmware"}, Variant: "minbase", Packages: []string{"curl", "openssh-server"}},
		Env: map[string]string{"DIRECTOR_URL": "https://d:5555"},
		Provisioners: []plan.Provisioner{
			{Type: "shell", Inline: []string{"echo it's"}, Env: map[string]string{"X": "1"}},
			{Type: "shell", Script: script},
			{Type: "file", Source: script, Destination: "/opt/s.sh", Mode: "0755"},
			// Another image's artifact with its catalogue entry (cmd/cpsimage builtInputs).
			{Type: "file", Image: "lxc", Source: script, Destination: "/var/lib/x/lxc.img", Catalogue: "/tmp/entry.json"},
		},
	}
	args, err := bootstrapArgs(img, "/tmp/root", "/var/cache/cps/apt/amd64", []string{"systemd-sysv", "curl"})
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(args, "\n")
	for _, want := range []string{
		"--arch=amd64", "--variant=minbase", "--components=main,non-free-firmware",
		"--include=curl,openssh-server,systemd-sysv", // sorted, deduplicated
		"--setup-hook=sync-in /var/cache/cps/apt/amd64 /var/cache/apt/archives/",
		"--customize-hook=sync-out /var/cache/apt/archives /var/cache/cps/apt/amd64",
		`'DIRECTOR_URL=https://d:5555' 'X=1' DEBIAN_FRONTEND=noninteractive /bin/sh /tmp/cps-provision-1`,
		`echo it'\''s`,
		"echo from-script",
		`chmod 0755 "$1"'/opt/s.sh'`,
		`cp '/tmp/entry.json' "$1"'/var/lib/x/lxc.img.catalogue.json'`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("mmdebstrap arguments lack %q:\n%s", want, all)
		}
	}
	if n := len(args); args[n-3] != "bookworm" || args[n-2] != "/tmp/root" || args[n-1] != "http://127.0.0.1/debian" {
		t.Errorf("positional arguments = %q", args[n-3:])
	}
}

func TestBootstrapArgsRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cache string
		p     plan.Provisioner
		want  string
	}{
		{"cache with space", "/var/my cache", plan.Provisioner{Type: "shell", Inline: []string{"true"}}, "spaces or quotes"},
		{"unknown type", "", plan.Provisioner{Type: "ansible"}, `unknown type "ansible"`},
		{"empty shell", "", plan.Provisioner{Type: "shell"}, "neither inline nor script"},
		{"relative destination", "", plan.Provisioner{Type: "file", Source: "/etc/hostname", Destination: "etc/x"}, "absolute destination"},
		{"missing source", "", plan.Provisioner{Type: "file", Source: "/nonexistent/x", Destination: "/x"}, "no such file"},
		{"bad mode", "", plan.Provisioner{Type: "file", Source: "/etc/hostname", Destination: "/x", Mode: "rwx"}, "not octal"},
		{"missing script", "", plan.Provisioner{Type: "shell", Script: "/nonexistent.sh"}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := &plan.Image{Name: "t", Arch: "amd64", Provisioners: []plan.Provisioner{tc.p}}
			_, err := bootstrapArgs(img, "/tmp/root", tc.cache, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestDiagnose(t *testing.T) {
	img := &plan.Image{Name: "conpaas", Distribution: plan.Distribution{Suite: "bookworm", Mirror: "http://127.0.0.1:9/debian", Components: []string{"main"}}}
	for _, tc := range []struct{ out, want string }{
		{"E: Unable to locate package nosuchpkg\n", `package "nosuchpkg" is not in bookworm (main) at http://127.0.0.1:9/debian`},
		{"Err:1 http://127.0.0.1:9/debian bookworm InRelease\n  Could not connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)\nE: Failed to fetch http://127.0.0.1:9/debian/dists/bookworm/InRelease\n", "cannot download packages from http://127.0.0.1:9/debian"},
		{"E: The repository 'http://x/debian nosuite Release' does not have a Release file.\n", "check distribution.mirror and suite"},
		{"some other failure\n", ""},
		// A resolver hiccup apt got over must not be blamed for a later failure.
		{"W: Failed to fetch http://x/debian/dists/bookworm/InRelease  Temporary failure resolving 'x'\nsetting up foo\nE: Sub-process /usr/bin/dpkg returned an error code (1)\n", ""},
		{"Err:1 http://127.0.0.1:9/debian bookworm InRelease\n  Could not connect\nE: Failed to fetch http://127.0.0.1:9/debian/dists/bookworm/InRelease  Could not connect to 127.0.0.1:9\nE: Some index files failed to download.\nE: apt-get update --error-on=any failed\nE: mmdebstrap failed to run\n", "cannot download packages from http://127.0.0.1:9/debian"},
		{"E: setup failed: E: command failed: chroot x /bin/sh /tmp/cps-provision-1\nE: mmdebstrap failed to run\n", ""},
		{"Err:3 http://x/debian bookworm/main amd64 foo amd64 1.0\n  Temporary failure resolving 'x'\nE: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing?\n", "Temporary failure resolving"},
	} {
		got := diagnose(tc.out, img)
		if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("diagnose(%q) = %q, want %q", tc.out, got, tc.want)
		}
	}
}

// An early file becomes an essential hook that writes it, byte for byte
// and with its mode, into the tree mmdebstrap passes as $1: run here by
// sh as mmdebstrap runs it. A path that the hook's quoting cannot carry
// is refused.
func TestEarlyHook(t *testing.T) {
	data := "#!/bin/sh\necho \"it's $1\" `x` \\n %s\n"
	img := &plan.Image{Name: "t", Arch: "amd64"}
	args, err := bootstrapArgs(img, "/tmp/root", "", nil, File{Path: "/etc/initramfs-tools/hooks/x", Mode: 0o755, Data: []byte(data)})
	if err != nil {
		t.Fatal(err)
	}
	var hook string
	for _, a := range args {
		if h, ok := strings.CutPrefix(a, "--essential-hook="); ok {
			hook = h
		}
	}
	if hook == "" {
		t.Fatalf("no essential hook in %q", args)
	}
	root := t.TempDir()
	if out, err := exec.Command("sh", "-c", hook, "sh", root).CombinedOutput(); err != nil {
		t.Fatalf("hook %q: %v\n%s", hook, err, out)
	}
	p := filepath.Join(root, "etc/initramfs-tools/hooks/x")
	b, err := os.ReadFile(p)
	if err != nil || string(b) != data {
		t.Fatalf("wrote %q (%v), want %q", b, err, data)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o755 {
		t.Errorf("mode %o, want 755", st.Mode().Perm())
	}
	for _, bad := range []string{"etc/x", "/etc/a b", "/etc/$x", "/etc/../x"} {
		if _, err := bootstrapArgs(img, "/tmp/root", "", nil, File{Path: bad, Mode: 0o644}); err == nil || !strings.Contains(err.Error(), "not a plain absolute path") {
			t.Errorf("path %q: err = %v", bad, err)
		}
	}
}
