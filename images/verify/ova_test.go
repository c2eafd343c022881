package verify

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conpaas/cps/images/vmdk"
)

// testVMDK is a small streamOptimized VMDK made by our writer.
func testVMDK(t testing.TB) []byte {
	t.Helper()
	src := filepath.Join(t.TempDir(), "disk.img")
	f, _ := os.Create(src)
	f.Truncate(2 << 20)
	f.WriteAt([]byte("a disk"), 4096)
	f.Close()
	in, _ := os.Open(src)
	defer in.Close()
	var b bytes.Buffer
	if _, err := vmdk.Write(context.Background(), &b, in, vmdk.Options{}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type member struct {
	name string
	body []byte
}

func tarOf(ms []member) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, m := range ms {
		tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.body))})
		tw.Write(m.body)
	}
	tw.Close()
	return b.Bytes()
}

// mfLines is a manifest of ms, one line per member and algorithm.
func mfLines(ms []member, algos ...string) string {
	var b strings.Builder
	for _, m := range ms {
		for _, a := range algos {
			var d []byte
			switch a {
			case "SHA1":
				s := sha1.Sum(m.body)
				d = s[:]
			case "SHA256":
				s := sha256.Sum256(m.body)
				d = s[:]
			case "SHA512":
				s := sha512.Sum512(m.body)
				d = s[:]
			}
			fmt.Fprintf(&b, "%s(%s)= %x\n", a, m.name, d)
		}
	}
	return b.String()
}

const testOVF = `<?xml version="1.0"?><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"></Envelope>`

// Issue 15: a tampered disk whose manifest line is SHA512, a manifest
// with the disk's line removed, and random bytes as the VMDK all gave
// "manifest: OK".
func TestOVAManifestAndDisk(t *testing.T) {
	disk := testVMDK(t)
	ovf := member{"a.ovf", []byte(testOVF)}
	good := []member{ovf, {"a-disk1.vmdk", disk}}
	tampered := append([]byte(nil), disk...)
	tampered[len(tampered)-2000] ^= 1 // in the grain tables' padding: still a sound VMDK
	random := make([]byte, len(disk))
	rand.New(rand.NewSource(15)).Read(random)
	tests := []struct {
		name    string
		members []member
		want    string // "" = sound
	}{
		{"sound, every algorithm", append(good, member{"a.mf", []byte(mfLines(good, "SHA1", "SHA256", "SHA512"))}), ""},
		{"tampered disk, SHA512 line", []member{ovf, {"a-disk1.vmdk", tampered}, {"a.mf", []byte(mfLines(good, "SHA512"))}}, "a-disk1.vmdk: SHA512 is"},
		{"tampered disk, SHA1 and SHA512 lines", []member{ovf, {"a-disk1.vmdk", tampered}, {"a.mf", []byte(mfLines(good, "SHA1", "SHA512"))}}, "a-disk1.vmdk: SHA1 is"},
		{"disk line removed", []member{ovf, {"a-disk1.vmdk", disk}, {"a.mf", []byte(mfLines(good[:1], "SHA256"))}}, "a-disk1.vmdk has no line in the manifest"},
		{"random bytes as the disk", []member{ovf, {"a-disk1.vmdk", random}, {"a.mf", []byte(mfLines([]member{ovf, {"a-disk1.vmdk", random}}, "SHA256"))}}, "a-disk1.vmdk: not a VMDK"},
		{"member twice", []member{ovf, {"a-disk1.vmdk", disk}, {"a-disk1.vmdk", disk}, {"a.mf", []byte(mfLines(good, "SHA256"))}}, "appears twice"},
		{"descriptor over 4 MiB", []member{{"a.ovf", make([]byte, MaxOVFSize+1)}, {"a.mf", nil}}, "a descriptor is at most"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "a.ova")
			os.WriteFile(p, tarOf(tc.members), 0o644)
			ps, err := OVA(p)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(ps, "\n")
			if (tc.want == "") != (len(ps) == 0) || !strings.Contains(got, tc.want) {
				t.Errorf("problems %q, want %q", ps, tc.want)
			}
		})
	}
}

// FuzzOVA is the OVA/OVF reader's fuzz target: any tar (or not) gives
// problems or an error from both readers, never a panic.
func FuzzOVA(f *testing.F) {
	disk := testVMDK(f)
	good := []member{{"a.ovf", []byte(testOVF)}, {"a-disk1.vmdk", disk}}
	f.Add(tarOf(append(good, member{"a.mf", []byte(mfLines(good, "SHA256"))})))
	f.Add(tarOf([]member{{"a.ovf", []byte(`<Envelope><DiskSection><Disk capacity="1" capacityAllocationUnits="byte * 2^30"/></DiskSection><VirtualSystem id="x"><VirtualHardwareSection><Item><ResourceType>3</ResourceType><VirtualQuantity>2</VirtualQuantity></Item></VirtualHardwareSection></VirtualSystem></Envelope>`)}, {"a.mf", []byte("SHA512(a.ovf)= 00\n")}}))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if ps, err := checkOVA(bytes.NewReader(b), "fuzz.ova"); err == nil && ps == nil && len(b) > 0 {
			if _, err := inspectOVA(bytes.NewReader(b), "fuzz.ova"); err != nil {
				t.Fatalf("sound for OVA, unreadable for inspect: %v", err)
			}
		}
		inspectOVA(bytes.NewReader(b), "fuzz.ova")
	})
}

// A truncated or empty .ova: inspect said "broken OVA (tar: unexpected
// EOF)" (no what to do) and "has no .ovf descriptor" for an empty file.
// Both entry points now say it is truncated (or empty) and to get it again.
func TestOVATruncated(t *testing.T) {
	ms := []member{{"t.ovf", []byte(testOVF)}, {"t-disk1.vmdk", testVMDK(t)}}
	whole := tarOf(append(ms, member{"t.mf", []byte(mfLines(ms, "SHA256"))}))
	dir := t.TempDir()
	tests := []struct {
		name string
		n    int // bytes of the good OVA kept
		want string
	}{
		{"empty", 0, "is empty (no tar members): it is not an appliance; download or build it again"},
		{"inside the first header", 100, "is truncated (the archive ends inside a member or header): download or build it again"},
		{"inside the disk", 512 + 1024 + 3000, "download or build it again"},
		{"inside the last header", len(whole) - 1024 - 512 - 100, "download or build it again"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".ova")
			os.WriteFile(p, whole[:tc.n], 0o644)
			_, ierr := InspectOVA(p)
			if ierr == nil || !strings.Contains(ierr.Error(), tc.want) {
				t.Errorf("InspectOVA: %v; want %q", ierr, tc.want)
			}
			if _, err := OVA(p); tc.n > 0 && (err == nil || !strings.Contains(err.Error(), "download or build it again")) {
				t.Errorf("OVA: %v; want what to do", err)
			}
		})
	}
}
