package qemu

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/conpaas/cps/internal/testutil"
)

func TestBootRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no marker", Options{Image: "/etc/hostname"}, "no marker"},
		{"no image", Options{Image: "/nonexistent.img", Marker: regexp.MustCompile("x")}, "no such file"},
		{"no extra drive", Options{Image: "/etc/hostname", Drives: []string{"/nonexistent.img"}, Marker: regexp.MustCompile("x")}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Boot(context.Background(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// A blank disk does not boot: Boot gives up at the deadline, kills QEMU and
// returns the console so far (SeaBIOS saying it found nothing to boot).
func TestBootTimeoutShowsConsole(t *testing.T) {
	testutil.RequireTool(t, "qemu-system-x86_64")
	img := filepath.Join(t.TempDir(), "blank.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := Boot(context.Background(), Options{Image: img, Marker: regexp.MustCompile("CONPAAS-READY"), Timeout: 15 * time.Second, MemoryMiB: 128})
	if err == nil {
		t.Fatal("a blank disk booted")
	}
	if !strings.Contains(err.Error(), "the image did not boot") || !strings.Contains(err.Error(), "Booting from Hard Disk") {
		t.Fatalf("error lacks the reason or the console: %v", err)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("Boot returned after %s, deadline was 15s", el)
	}
}

// Every card is on a restricted user network; forwards go to the loopback
// only, through nc; Args cannot add an unrestricted card.
func TestNICArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		nics []NIC
		args []string
		want []string
		err  string
	}{
		{"default", nil, nil, []string{"-nic", "user,model=virtio-net-pci,restrict=on,ipv6=off"}, ""},
		{"forward", []NIC{{Forwards: []Forward{{Guest: "10.0.2.100:443", Host: "127.0.0.1:4321"}}}}, nil,
			[]string{"-nic", "user,model=virtio-net-pci,restrict=on,ipv6=off,guestfwd=tcp:10.0.2.100:443-cmd:nc -N 127.0.0.1 4321"}, ""},
		{"metadata", []NIC{{Net: "169.254.0.0/16", Forwards: []Forward{{Guest: "169.254.169.254:80", Host: "[::1]:80"}}}}, nil,
			[]string{"-nic", "user,model=virtio-net-pci,restrict=on,ipv6=off,net=169.254.0.0/16,guestfwd=tcp:169.254.169.254:80-cmd:nc -N ::1 80"}, ""},
		{"two cards", []NIC{{}, {Net: "192.168.56.0/24", Host: "192.168.56.1"}}, nil,
			[]string{"-nic", "user,model=virtio-net-pci,restrict=on,ipv6=off", "-nic", "user,model=virtio-net-pci,restrict=on,ipv6=off,net=192.168.56.0/24,host=192.168.56.1"}, ""},
		// Only for the test proving the canary sees a hole.
		{"unrestricted", []NIC{{Unrestricted: true}}, nil, []string{"-nic", "user,model=virtio-net-pci"}, ""},
		{"unrestricted with forwards", []NIC{{Unrestricted: true, Forwards: []Forward{{Guest: "10.0.2.100:443", Host: "127.0.0.1:1"}}}}, nil, nil, "needs no forwards"},
		{"nic in args", nil, []string{"-nic", "user"}, nil, "bypass the restricted network"},
		{"netdev in args", nil, []string{"-netdev", "user,id=n"}, nil, "bypass the restricted network"},
		{"forward off the loopback", []NIC{{Forwards: []Forward{{Guest: "10.0.2.100:80", Host: "192.0.2.1:80"}}}}, nil, nil, "loopback only"},
		{"metadata outside the network", []NIC{{Net: "10.0.2.0/24", Forwards: []Forward{{Guest: "169.254.169.254:80", Host: "127.0.0.1:80"}}}}, nil, nil, "outside the NIC's network"},
		{"bad guest address", []NIC{{Forwards: []Forward{{Guest: "director:443", Host: "127.0.0.1:80"}}}}, nil, nil, "not an IPv4 address"},
		{"host forward", []NIC{{Net: "192.168.56.0/24", HostForwards: []HostForward{{Host: "127.0.0.1:2222", Guest: "192.168.56.10:22"}}}}, nil,
			[]string{"-nic", "user,model=virtio-net-pci,restrict=on,ipv6=off,net=192.168.56.0/24,hostfwd=tcp:127.0.0.1:2222-192.168.56.10:22"}, ""},
		{"host forward on every address", []NIC{{HostForwards: []HostForward{{Host: "0.0.0.0:2222", Guest: "10.0.2.15:22"}}}}, nil, nil, "127.0.0.1 only"},
		{"host forward outside the network", []NIC{{Net: "192.168.56.0/24", HostForwards: []HostForward{{Host: "127.0.0.1:2222", Guest: "10.0.2.15:22"}}}}, nil, nil, "in the NIC's network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := nicArgs(tc.nics, tc.args)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// Check judges the probe's console lines and the canary.
func TestCanaryCheck(t *testing.T) {
	c := NewCanary(t)
	if !strings.Contains(c.Probe("10.0.2.100:443"), "/dev/tcp/10.0.2.100/443") || !strings.Contains(c.Probe(), "/dev/udp/10.0.2.2/") {
		t.Fatalf("probe lacks a try:\n%s", c.Probe())
	}
	isolated := "CPS-PROBE tcp 10.0.2.2:1 blocked\nCPS-PROBE udp 10.0.2.2:1 reached\nCPS-PROBE tcp 10.0.2.100:443 reached\n"
	for _, tc := range []struct {
		name, console string
		want          string
	}{
		{"isolated", isolated, ""},
		{"no probe", "login:", "did not run"},
		{"gateway reached", isolated + "CPS-PROBE tcp 10.0.2.2:1 reached\n", "reached tcp 10.0.2.2:1"},
		{"forward broken", "CPS-PROBE tcp 10.0.2.100:443 blocked\n", "did not reach its forward 10.0.2.100:443"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(c.Check(tc.console, "10.0.2.100:443"), "; ")
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("Check = %q, want %q", got, tc.want)
			}
		})
	}
	// Anything that reaches the canary's ports is a hole.
	conn, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", c.Port))
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("leak"))
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(c.Hits()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := strings.Join(c.Check(isolated, "10.0.2.100:443"), "; "); !strings.Contains(got, `canary got a udp datagram "leak"`) {
		t.Fatalf("Check = %q, want the canary's hit", got)
	}
}
