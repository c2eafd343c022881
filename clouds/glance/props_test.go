package glance

import (
	"context"
	"strings"
	"testing"

	"github.com/conpaas/cps/clouds/osauth"
	"github.com/conpaas/cps/clouds/register"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/plan"
)

func TestProperties(t *testing.T) {
	cases := []struct {
		name string
		reg  Settings
		art  register.Artifact
		want map[string]string
		fmt  string
		img  string
	}{
		{"raw-amd64-bios", Settings{}, register.Artifact{Path: "a.img", Name: "conpaas", Version: "2.1.0", Arch: "amd64", Boot: catalogue.BootModes{catalogue.BootBIOS, catalogue.BootUEFI}},
			map[string]string{"architecture": "x86_64", "os_distro": "debian", "os_type": "linux", "conpaas_version": "2.1.0"}, "raw", "conpaas-2.1.0"},
		{"uefi-arm64-override", Settings{Properties: map[string]string{"os_distro": "ubuntu", "name": "x"}},
			register.Artifact{Path: "a.qcow2", Name: "c", Arch: "arm64", Boot: catalogue.BootModes{catalogue.BootUEFI}},
			map[string]string{"architecture": "aarch64", "os_distro": "ubuntu", "os_type": "linux", "hw_firmware_type": "uefi", "name": "x"}, "qcow2", "x"},
		{"lxc-filesystem", Settings{}, register.Artifact{Path: "conpaas-lxc.img", Name: "conpaas-lxc", Version: "2.1.0", Kind: plan.KindLXC, Arch: "amd64"},
			map[string]string{"architecture": "x86_64", "os_distro": "debian", "os_type": "linux", "conpaas_version": "2.1.0", "hypervisor_type": "lxc"}, "raw", "conpaas-lxc-2.1.0"},
		{"explicit-format", Settings{DiskFormat: "vmdk"}, register.Artifact{Path: "a.img", Name: "c", Arch: "armhf"},
			map[string]string{"architecture": "armv7l", "os_distro": "debian", "os_type": "linux"}, "vmdk", "c-vmdk"},
		// A raw and a VMDK (and a qcow2) of one image get names that differ
		// and say which is which; raw keeps the seeds' plain name.
		{"vmdk-of-the-same-image", Settings{}, register.Artifact{Path: "conpaas.vmdk", Name: "conpaas", Version: "2.1.0", Arch: "amd64"},
			map[string]string{"architecture": "x86_64", "os_distro": "debian", "os_type": "linux", "conpaas_version": "2.1.0"}, "vmdk", "conpaas-2.1.0-vmdk"},
		{"qcow2-of-the-same-image", Settings{}, register.Artifact{Path: "conpaas.qcow2", Name: "conpaas", Version: "2.1.0", Arch: "amd64"},
			map[string]string{"architecture": "x86_64", "os_distro": "debian", "os_type": "linux", "conpaas_version": "2.1.0"}, "qcow2", "conpaas-2.1.0-qcow2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Properties(c.reg, c.art)
			if len(got) != len(c.want) {
				t.Errorf("properties %v, want %v", got, c.want)
			}
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			if f := diskFormat(c.reg, c.art); f != c.fmt {
				t.Errorf("disk format %q, want %q", f, c.fmt)
			}
			if n := ImageName(c.reg, c.art); n != c.img {
				t.Errorf("name %q, want %q", n, c.img)
			}
		})
	}
}

// Without any credentials the error says what to set.
func TestMissingCredentials(t *testing.T) {
	for _, k := range []string{EnvEndpoint, "OS_CLOUD", "OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME", "OS_TOKEN"} {
		t.Setenv(k, "")
	}
	_, _, err := (&Target{OpenStack: osauth.FromEnv}).Client(context.Background(), "")
	if err == nil || !strings.Contains(err.Error(), "OS_AUTH_URL") {
		t.Fatalf("error %v, want one naming OS_AUTH_URL", err)
	}
}
