package flash

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Host is where the safety checks look at the running system. The zero
// value means the real one; tests point it at a made-up sysfs tree.
type Host struct {
	SysRoot   string // default "/sys"
	MountInfo string // default "/proc/self/mountinfo"
	Swaps     string // default "/proc/swaps"
}

func (h Host) sys() string {
	if h.SysRoot == "" {
		return "/sys"
	}
	return h.SysRoot
}

func (h Host) mountinfo() string {
	if h.MountInfo == "" {
		return "/proc/self/mountinfo"
	}
	return h.MountInfo
}

func (h Host) swaps() string {
	if h.Swaps == "" {
		return "/proc/swaps"
	}
	return h.Swaps
}

// blockDev is one node of the kernel's block device graph: a disk, a
// partition, or a stacked device (device-mapper, md) with its slaves.
type blockDev struct {
	name    string
	dev     string   // "major:minor"
	disk    string   // the whole disk of a partition; "" for a disk
	parts   []string // partitions of a disk
	holders []string // devices stacked on this one (dm, md, bcache)
	slaves  []string // devices this one is stacked on
}

// graph reads /sys/block: every disk, its partitions, their holders and
// slaves, by kernel name.
func (h Host) graph() (map[string]*blockDev, error) {
	root := filepath.Join(h.sys(), "block")
	disks, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	g := map[string]*blockDev{}
	for _, d := range disks {
		dir := filepath.Join(root, d.Name())
		n := &blockDev{name: d.Name(), dev: readTrim(filepath.Join(dir, "dev"))}
		n.holders = names(filepath.Join(dir, "holders"))
		n.slaves = names(filepath.Join(dir, "slaves"))
		g[n.name] = n
		subs, _ := os.ReadDir(dir)
		for _, s := range subs {
			pdir := filepath.Join(dir, s.Name())
			if _, err := os.Stat(filepath.Join(pdir, "partition")); err != nil {
				continue
			}
			p := &blockDev{name: s.Name(), dev: readTrim(filepath.Join(pdir, "dev")), disk: n.name}
			p.holders = names(filepath.Join(pdir, "holders"))
			g[p.name] = p
			n.parts = append(n.parts, p.name)
		}
	}
	return g, nil
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func names(dir string) []string {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// above returns n and everything that depends on it: its partitions and,
// recursively, the devices stacked on any of them. If any of these is
// mounted or used as swap, writing n destroys a live filesystem.
func above(g map[string]*blockDev, n string) []string {
	seen := map[string]bool{}
	var walk func(string)
	walk = func(x string) {
		if seen[x] || g[x] == nil {
			return
		}
		seen[x] = true
		for _, p := range g[x].parts {
			walk(p)
		}
		for _, h := range g[x].holders {
			walk(h)
		}
	}
	walk(n)
	return sortedKeys(seen)
}

// disksBelow returns the whole disks n lives on: itself for a disk, the
// disk of a partition, the disks under every slave of a stacked device.
func disksBelow(g map[string]*blockDev, n string) []string {
	seen := map[string]bool{}
	out := map[string]bool{}
	var walk func(string)
	walk = func(x string) {
		if seen[x] || g[x] == nil {
			return
		}
		seen[x] = true
		d := g[x]
		switch {
		case d.disk != "":
			walk(d.disk)
		case len(d.slaves) > 0:
			for _, s := range d.slaves {
				walk(s)
			}
		default:
			out[x] = true
		}
	}
	walk(n)
	return sortedKeys(out)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// mount is one line of /proc/self/mountinfo.
type mount struct {
	dev    string // "major:minor"
	point  string
	source string
}

func (h Host) mounts() ([]mount, error) {
	f, err := os.Open(h.mountinfo())
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] - TYPE SOURCE SUPEROPTS
		fs := strings.Fields(sc.Text())
		if len(fs) < 5 {
			continue
		}
		m := mount{dev: fs[2], point: unescape(fs[4])}
		for i := 5; i < len(fs)-2; i++ {
			if fs[i] == "-" {
				m.source = unescape(fs[i+2])
				break
			}
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return out, nil
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// swapDevs returns the major:minor of every block device in use as swap,
// mapped to its /proc/swaps name. Names stat'ed as block devices count, and
// /dev/NAME is also matched to the kernel name NAME when it cannot be
// stat'ed (udev-less systems, tests).
func (h Host) swapDevs(g map[string]*blockDev) map[string]string {
	out := map[string]string{}
	b, err := os.ReadFile(h.swaps())
	if err != nil {
		return out
	}
	for i, l := range strings.Split(string(b), "\n") {
		fs := strings.Fields(l)
		if i == 0 || len(fs) < 2 || fs[1] != "partition" {
			continue
		}
		name := unescape(fs[0])
		var st unix.Stat_t
		if unix.Stat(name, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
			out[devString(st.Rdev)] = name
		} else if n := g[filepath.Base(name)]; n != nil {
			out[n.dev] = name
		}
	}
	return out
}

func devString(rdev uint64) string {
	return fmt.Sprintf("%d:%d", unix.Major(rdev), unix.Minor(rdev))
}

// CheckBlockDevice refuses a device that must not be overwritten: one that
// is (or whose partitions, or devices stacked on them, are) mounted or used
// as swap, and any device on the disk that holds the root filesystem. dev
// is the device number (stat's st_rdev); path is only used in messages.
func (h Host) CheckBlockDevice(path string, rdev uint64) error {
	g, err := h.graph()
	if err != nil {
		return err
	}
	want := devString(rdev)
	var target string
	for name, n := range g {
		if n.dev == want {
			target = name
			break
		}
	}
	if target == "" {
		return fmt.Errorf("%s (device %s) is not a disk or partition listed in %s/block; give the SD card's device, e.g. /dev/sdX or /dev/mmcblkN (see lsblk)", path, want, h.sys())
	}
	ms, err := h.mounts()
	if err != nil {
		return err
	}
	byDev := map[string]mount{}
	var root *mount
	for i, m := range ms {
		if _, ok := byDev[m.dev]; !ok {
			byDev[m.dev] = m
		}
		if m.point == "/" {
			root = &ms[i] // the last "/" is the one this process sees
		}
	}
	// The root disk first: it is the most dangerous mistake and deserves
	// the most specific message.
	if root != nil {
		rootDev := root.dev
		if strings.HasPrefix(rootDev, "0:") && strings.HasPrefix(root.source, "/dev/") {
			// btrfs and friends report an anonymous device; the source
			// names the real one.
			var st unix.Stat_t
			if unix.Stat(root.source, &st) == nil {
				rootDev = devString(st.Rdev)
			}
		}
		for name, n := range g {
			if n.dev != rootDev {
				continue
			}
			rd := disksBelow(g, name)
			for _, td := range disksBelow(g, target) {
				for _, r := range rd {
					if td == r {
						return fmt.Errorf("refusing to write %s: disk %s holds the root filesystem /; give the SD card's device (see lsblk)", path, r)
					}
				}
			}
		}
	}
	swaps := h.swapDevs(g)
	for _, name := range above(g, target) {
		n := g[name]
		if m, ok := byDev[n.dev]; ok {
			return fmt.Errorf("refusing to write %s: /dev/%s is mounted at %s; unmount it first (umount %s)", path, name, m.point, m.point)
		}
		if s, ok := swaps[n.dev]; ok {
			return fmt.Errorf("refusing to write %s: /dev/%s is in use as swap (%s); run swapoff %s first", path, name, s, s)
		}
	}
	return nil
}
