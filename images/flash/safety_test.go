package flash

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeSys builds a /sys/block tree: disk -> partitions (NAME:DEV), with
// holders and slaves as the kernel links them.
type fakeDisk struct {
	name, dev string
	parts     map[string]string   // partition name -> dev
	holders   map[string][]string // device (disk or partition) name -> holders
	slaves    []string
}

func fakeSys(t *testing.T, disks []fakeDisk) string {
	t.Helper()
	root := t.TempDir()
	w := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range disks {
		dir := filepath.Join(root, "block", d.name)
		w(filepath.Join(dir, "dev"), d.dev)
		os.MkdirAll(filepath.Join(dir, "holders"), 0o755)
		os.MkdirAll(filepath.Join(dir, "slaves"), 0o755)
		for p, dev := range d.parts {
			w(filepath.Join(dir, p, "dev"), dev)
			w(filepath.Join(dir, p, "partition"), p[len(p)-1:])
			os.MkdirAll(filepath.Join(dir, p, "holders"), 0o755)
		}
		for who, hs := range d.holders {
			hd := filepath.Join(dir, "holders")
			if who != d.name {
				hd = filepath.Join(dir, who, "holders")
			}
			for _, h := range hs {
				w(filepath.Join(hd, h), "")
			}
		}
		for _, s := range d.slaves {
			w(filepath.Join(dir, "slaves", s), "")
		}
	}
	return root
}

func mountinfo(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mountinfo")
	var b strings.Builder
	for i, l := range lines {
		// "DEV POINT SOURCE" -> a mountinfo line
		f := strings.Fields(l)
		b.WriteString(strings.Join([]string{strconv.Itoa(20 + i), "1", f[0], "/", f[1], "rw,relatime", "shared:1", "-", "ext4", f[2], "rw"}, " "))
		b.WriteString("\n")
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func swapsFile(t *testing.T, devs ...string) string {
	p := filepath.Join(t.TempDir(), "swaps")
	s := "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
	for _, d := range devs {
		s += d + " partition\t1048572\t\t0\t\t-2\n"
	}
	os.WriteFile(p, []byte(s), 0o644)
	return p
}

func rdev(s string) uint64 {
	var ma, mi uint32
	parts := strings.SplitN(s, ":", 2)
	for _, c := range parts[0] {
		ma = ma*10 + uint32(c-'0')
	}
	for _, c := range parts[1] {
		mi = mi*10 + uint32(c-'0')
	}
	return unix.Mkdev(ma, mi)
}

func TestCheckBlockDevice(t *testing.T) {
	disks := []fakeDisk{
		{name: "sda", dev: "8:0", parts: map[string]string{"sda1": "8:1", "sda2": "8:2"}},
		{name: "sdb", dev: "8:16", parts: map[string]string{"sdb1": "8:17", "sdb2": "8:18"}},
		{name: "sdc", dev: "8:32", parts: map[string]string{"sdc1": "8:33"}, holders: map[string][]string{"sdc1": {"dm-0"}}},
		{name: "sdd", dev: "8:48", parts: map[string]string{"sdd1": "8:49", "sdd2": "8:50"}},
		{name: "sde", dev: "8:64", parts: map[string]string{"sde1": "8:65"}},
		{name: "sdf", dev: "8:80", holders: map[string][]string{"sdf": {"dm-1"}}},
		{name: "dm-0", dev: "253:0", slaves: []string{"sdc1"}},
		{name: "dm-1", dev: "253:1", slaves: []string{"sdf"}},
		{name: "mmcblk0", dev: "179:0", parts: map[string]string{"mmcblk0p1": "179:1", "mmcblk0p2": "179:2"}},
	}
	sys := fakeSys(t, disks)
	plainRoot := mountinfo(t, "8:1 / /dev/sda1", "8:17 /media/card /dev/sdb1", "253:0 /srv /dev/mapper/vg-srv")
	lvmRoot := mountinfo(t, "253:1 / /dev/mapper/vg-root")
	swaps := swapsFile(t, "/dev/sdd2")
	tests := []struct {
		name, path, dev, mounts, want string
	}{
		{"root disk", "/dev/sda", "8:0", plainRoot, "disk sda holds the root filesystem /"},
		{"unmounted partition of the root disk", "/dev/sda2", "8:2", plainRoot, "disk sda holds the root filesystem /"},
		{"mounted partition", "/dev/sdb", "8:16", plainRoot, "/dev/sdb1 is mounted at /media/card"},
		{"partition itself mounted", "/dev/sdb1", "8:17", plainRoot, "/dev/sdb1 is mounted at /media/card"},
		{"mounted through device-mapper", "/dev/sdc", "8:32", plainRoot, "/dev/dm-0 is mounted at /srv"},
		{"swap partition", "/dev/sdd", "8:48", plainRoot, "/dev/sdd2 is in use as swap"},
		{"root on LVM over the disk", "/dev/sdf", "8:80", lvmRoot, "disk sdf holds the root filesystem /"},
		{"unknown device", "/dev/weird", "7:99", plainRoot, "is not a disk or partition"},
		{"free card", "/dev/sde", "8:64", plainRoot, ""},
		{"free mmc card", "/dev/mmcblk0", "179:0", plainRoot, ""},
		{"sdb is fine when nothing is mounted", "/dev/sdb", "8:16", lvmRoot, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := Host{SysRoot: sys, MountInfo: tc.mounts, Swaps: swaps}
			err := h.CheckBlockDevice(tc.path, rdev(tc.dev))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused a free device: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestRealRootDisk runs the check against this machine: the disk holding
// / must be refused. Nothing is opened for writing.
func TestRealRootDisk(t *testing.T) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Skip("no /proc/self/mountinfo")
	}
	defer f.Close()
	var src string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 4 && fs[4] == "/" {
			for i := 5; i < len(fs)-2; i++ {
				if fs[i] == "-" {
					src = fs[i+2]
				}
			}
		}
	}
	var st unix.Stat_t
	if !strings.HasPrefix(src, "/dev/") || unix.Stat(src, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		t.Skipf("root filesystem %q is not on a block device here", src)
	}
	err = Host{}.CheckBlockDevice(src, st.Rdev)
	if err == nil || !strings.Contains(err.Error(), "holds the root filesystem /") {
		t.Fatalf("CheckBlockDevice(%s) = %v, want a refusal naming the root filesystem", src, err)
	}
	// And through Flash: refused before anything is written.
	img := filepath.Join(t.TempDir(), "x.img")
	os.WriteFile(img, []byte("not written anywhere"), 0o644)
	if _, err := Flash(t.Context(), img, src, Options{}); err == nil || !strings.Contains(err.Error(), "root filesystem") {
		t.Fatalf("Flash to %s = %v, want a refusal", src, err)
	}
}
