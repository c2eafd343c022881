// Package container boots an LXC image (one ext4 filesystem, what Nova's
// libvirt LXC driver mounts as a container's root) as a container under
// systemd-nspawn, with /sbin/init as PID 1 as Nova starts it, and watches
// its console for a marker: the container counterpart of test/qemu.
//
// The container's only network is a veth pair to a network namespace the
// test owns (Network): a DHCP server (dnsmasq, what Neutron runs) hands it
// an address on 192.168.56.0/24 and a host route to the metadata address
// 169.254.169.254, and the test's servers listen in that namespace. Nothing
// else is reachable: neither the host nor its network.
package container

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/conpaas/cps/internal/testutil"
)

// Options of one boot.
type Options struct {
	// Image is the filesystem image, mounted through a loop device. It is
	// booted read-write, as Nova does: pass a copy.
	Image string
	// Network is the namespace the container's eth0 is in (Network.Container).
	Network *Network
	Marker  *regexp.Regexp
	// Also are lines that must have appeared too, before or after the
	// marker, before Boot stops the container: output of processes the
	// marker's writer started, which may come after the marker.
	Also    []*regexp.Regexp
	Timeout time.Duration // default 5 minutes
	// Console receives the console as it comes.
	Console io.Writer
}

// Result is what the console showed.
type Result struct {
	Line    string
	Console string
	Elapsed time.Duration
}

// Boot starts the container and returns when the marker appears on its
// console (the container is then stopped), the timeout passes or the
// container exits.
func Boot(ctx context.Context, o Options) (*Result, error) {
	if o.Marker == nil {
		return nil, errors.New("container: no marker to wait for")
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	if _, err := exec.LookPath("systemd-nspawn"); err != nil {
		return nil, errors.New("systemd-nspawn is not installed (apt-get install systemd-container)")
	}
	cg, err := newCgroup()
	if err != nil {
		return nil, err
	}
	defer cg.remove()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	root, err := os.MkdirTemp("", "cps-container-root-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(root)
	args := []string{
		"--directory=" + root,
		"--boot",
		// Not registered with a host systemd-machined, and kept in the
		// cgroup made here: build hosts and CI need not run systemd.
		"--register=no", "--keep-unit",
		// Output only; a pseudo terminal so systemd shows its status.
		"--console=read-only",
		"--machine=cps-lxc-test",
	}
	if o.Network != nil {
		// CAP_NET_ADMIN for systemd-networkd, as a libvirt LXC container
		// with its own interfaces has it (nspawn grants it with its own
		// network options, not with a namespace given).
		args = append(args, "--network-namespace-path="+o.Network.Container, "--capability=CAP_NET_ADMIN")
	} else {
		args = append(args, "--private-network")
	}
	// In a mount namespace of its own, a shell joins the test's cgroups
	// (everything the container runs is in them from its first
	// instruction), mounts the image through a loop device as Nova's
	// LoopMount does, and becomes nspawn. The mount and the loop device
	// go away with the namespace. (nspawn's own --image needs udev.)
	script := ""
	for _, d := range cg.dirs {
		script += "echo $$ > " + shq(filepath.Join(d, "cgroup.procs")) + " && "
	}
	script += "mount -o loop " + shq(o.Image) + " " + shq(root) + " && exec systemd-nspawn"
	for _, a := range args {
		script += " " + shq(a)
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script)
	// If the test dies, nspawn halts the container.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("systemd-nspawn: %w", err)
	}

	var (
		mu      sync.Mutex
		console strings.Builder
		found   = make(chan string, 1)
	)
	also := append([]*regexp.Regexp(nil), o.Also...)
	pending := len(also)
	go func() {
		var marker string
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				mu.Lock()
				console.WriteString(line)
				mu.Unlock()
				if o.Console != nil {
					o.Console.Write([]byte(line))
				}
				if o.Marker.MatchString(line) {
					marker = strings.TrimRight(line, "\r\n")
				}
				for i, re := range also {
					if re != nil && re.MatchString(line) {
						also[i] = nil
						pending--
					}
				}
				if marker != "" && pending == 0 {
					select {
					case found <- marker:
					default:
					}
				}
			}
			if err != nil {
				return
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// stop ends the container: nspawn halts it on the first SIGTERM and
	// kills it on the second.
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			return
		case <-time.After(20 * time.Second):
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	text := func() string {
		mu.Lock()
		defer mu.Unlock()
		return console.String()
	}
	select {
	case line := <-found:
		el := time.Since(start)
		stop()
		return &Result{Line: line, Console: text(), Elapsed: el}, nil
	case err := <-exited:
		return nil, fmt.Errorf("the container exited before %q (and %q) appeared (%v): %s\nconsole:\n%s", o.Marker, o.Also, err, strings.TrimSpace(stderr.String()), testutil.Tail(text(), 40))
	case <-ctx.Done():
		stop()
		return nil, fmt.Errorf("no %q (and %q) on the container's console within %s\nconsole:\n%s", o.Marker, o.Also, o.Timeout, testutil.Tail(text(), 40))
	}
}

// cgroup is a cgroup of the test's own for the container: systemd as the
// container's PID 1 does not start in the root cgroup, where the test runs
// on a build host without systemd. On a hybrid hierarchy the container
// needs a place in both the v2 tree and the name=systemd one.
type cgroup struct{ dirs []string }

func newCgroup() (*cgroup, error) {
	name := fmt.Sprintf("cps-lxc-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	cg := &cgroup{}
	roots := []string{"/sys/fs/cgroup"}
	if !isCgroup2("/sys/fs/cgroup") {
		roots = []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"}
	}
	for _, r := range roots {
		if _, err := os.Stat(filepath.Join(r, "cgroup.procs")); err != nil {
			continue
		}
		d := filepath.Join(r, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			cg.remove()
			return nil, fmt.Errorf("container: cgroup for the test: %w", err)
		}
		cg.dirs = append(cg.dirs, d)
	}
	if len(cg.dirs) == 0 {
		return nil, errors.New("container: no cgroup hierarchy under /sys/fs/cgroup")
	}
	return cg, nil
}

func isCgroup2(dir string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(dir, &st) == nil && st.Type == 0x63677270 // CGROUP2_SUPER_MAGIC
}

// remove kills what is left in the cgroups (a container whose nspawn was
// killed lives on) and deletes them, the ones the container made inside
// them first, waiting a little for their processes to be gone (the kernel
// refuses to remove a busy cgroup).
func (c *cgroup) remove() {
	for _, d := range c.dirs {
		os.WriteFile(filepath.Join(d, "cgroup.kill"), []byte("1"), 0o644) // v2 only
	}
	for _, d := range c.dirs {
		var dirs []string
		filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			for k := 0; k < 50; k++ {
				if err := os.Remove(dirs[i]); err == nil || os.IsNotExist(err) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
}

// shq quotes s for a POSIX shell.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
