package rootfs

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/conpaas/cps/internal/progress"
)

// mmdebstrap --verbose output, in the line forms mmdebstrap 1.3 (Debian
// 12) and apt/dpkg print them (taken from a real `mmdebstrap --verbose
// --variant=essential --include=netbase bookworm` run), with two essential
// packages and one more.
const mmOutput = `I: automatically chosen mode: root
I: running apt-get update...
Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]
Get:2 http://deb.debian.org/debian bookworm/main amd64 Packages [8790 kB]
Fetched 8941 kB in 11s (824 kB/s)
Reading package lists...
I: downloading packages with apt...
Reading package lists...
Building dependency tree...
0 upgraded, 2 newly installed, 0 to remove and 0 not upgraded.
Need to get 2893 kB of archives.
Get:1 http://deb.debian.org/debian bookworm/main amd64 gcc-12-base amd64 12.2.0-14+deb12u1 [37.6 kB]
Get:2 http://deb.debian.org/debian bookworm/main amd64 libc6 amd64 2.36-9+deb12u14 [2758 kB]
I: extracting archives...
I: installing essential packages...
Selecting previously unselected package gcc-12-base:amd64.
(Reading database ... 0 files and directories currently installed.)
Preparing to unpack .../gcc-12-base_12.2.0-14+deb12u1_amd64.deb ...
Unpacking gcc-12-base:amd64 (12.2.0-14+deb12u1) ...
Unpacking libc6:amd64 (2.36-9+deb12u14) ...
Setting up gcc-12-base:amd64 (12.2.0-14+deb12u1) ...
Setting up libc6:amd64 (2.36-9+deb12u14) ...
I: installing remaining packages inside the chroot...
0 upgraded, 1 newly installed, 0 to remove and 0 not upgraded.
Get:1 http://deb.debian.org/debian bookworm/main amd64 netbase all 6.4 [12.8 kB]
Selecting previously unselected package netbase.
Unpacking netbase (6.4) ...
Setting up netbase (6.4) ...
I: cleaning package lists and apt cache...
I: success in 246.2132 seconds
`

func TestMMProgress(t *testing.T) {
	var log, out bytes.Buffer
	old := progress.Output
	progress.Output = &log
	defer func() { progress.Output = old }()
	m := &mmProgress{ui: progress.Default(), out: &out}
	// Written in odd pieces, as a pipe delivers them.
	for i := 0; i < len(mmOutput); i += 37 {
		fmt.Fprint(m, mmOutput[i:min(i+37, len(mmOutput))])
	}
	m.finish()
	if out.String() != mmOutput {
		t.Errorf("the output kept for error messages differs")
	}
	got := log.String()
	for _, want := range []string{
		"rootfs: running apt-get update\n",
		"rootfs: downloading packages with apt\n",
		"rootfs: downloading packages with apt: 2/2 packages downloaded (100%)",
		"rootfs: installing essential packages\n",
		"rootfs: installing essential packages: 4/4 dpkg steps (unpack and set up each package) (100%)",
		"rootfs: installing remaining packages inside the chroot: 1/1 packages downloaded (100%)",
		"rootfs: installing remaining packages inside the chroot: 2/2 dpkg steps",
		"rootfs: cleaning package lists and apt cache\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("progress lacks %q:\n%s", want, got)
		}
	}
	// apt-get update's index downloads are not packages.
	if strings.Contains(got, "running apt-get update:") {
		t.Errorf("counted apt-get update's lines:\n%s", got)
	}
}
