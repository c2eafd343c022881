package verify

import (
	"archive/tar"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/conpaas/cps/images/vmdk"
)

var mfLine = regexp.MustCompile(`^(SHA1|SHA256|SHA512) ?\((.+)\)\s*=\s*([0-9a-fA-F]+)$`)

// Bounds on what an OVA may make the reader hold in memory: descriptors
// and manifests are a few KiB; a huge one is not a real appliance.
const (
	MaxOVFSize      = 4 << 20
	MaxManifestSize = 1 << 20
	maxMembers      = 10000
)

// OVA checks an appliance: a tar whose first member is the .ovf descriptor
// (well-formed XML, an ovf:Envelope, at most 4 MiB), each member once,
// every .vmdk a sound streamOptimized disk (vmdk.Check), and a manifest
// (.mf) that lists every other member (.cert apart) with digests that
// match for every algorithm it uses (SHA1, SHA256, SHA512), as VirtualBox
// checks on import. One line per problem.
func OVA(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return checkOVA(f, path)
}

func checkOVA(f io.Reader, path string) ([]string, error) {
	var (
		problems []string
		digests  = map[string]map[string]string{} // member -> algo -> hex
		manifest []byte
		mfName   string
		names    []string
	)
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	tr := tar.NewReader(f)
	for i := 0; ; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, brokenOVA(path, err)
		}
		if i == maxMembers {
			add("more than %d members: not an appliance", maxMembers)
			break
		}
		if _, dup := digests[h.Name]; dup {
			add("member %s appears twice; which copy a tool uses is not defined", h.Name)
		}
		names = append(names, h.Name)
		hs := map[string]hash.Hash{"SHA1": sha1.New(), "SHA256": sha256.New(), "SHA512": sha512.New()}
		w := io.MultiWriter(hs["SHA1"], hs["SHA256"], hs["SHA512"])
		r := io.TeeReader(tr, w)
		var body []byte
		switch ext := filepath.Ext(h.Name); ext {
		case ".ovf", ".mf":
			limit := int64(MaxOVFSize)
			if ext == ".mf" {
				limit = MaxManifestSize
			}
			if h.Size > limit {
				add("%s is %d bytes; a %s is at most %d: not a real appliance", h.Name, h.Size, map[string]string{".ovf": "descriptor", ".mf": "manifest"}[ext], limit)
				break
			}
			if body, err = io.ReadAll(r); err != nil {
				return nil, fmt.Errorf("%s: %s is truncated (%v): download or build it again", path, h.Name, err)
			}
		case ".vmdk":
			_, ps, err := vmdk.Check(r, h.Size)
			if err != nil {
				return nil, fmt.Errorf("%s: %s is truncated (%v): download or build it again", path, h.Name, err)
			}
			for _, p := range ps {
				add("%s: %s", h.Name, p)
			}
		}
		if _, err := io.Copy(w, tr); err != nil {
			return nil, fmt.Errorf("%s: %s is truncated (%v): download or build it again", path, h.Name, err)
		}
		digests[h.Name] = map[string]string{}
		for a, hh := range hs {
			digests[h.Name][a] = sum(hh)
		}
		switch {
		case strings.HasSuffix(h.Name, ".ovf") && body != nil:
			if i != 0 {
				add("descriptor %s is member %d; OVF requires it first", h.Name, i+1)
			}
			if _, err := descriptor(body); err != nil {
				add("%s: %v", h.Name, err)
			}
		case strings.HasSuffix(h.Name, ".mf") && body != nil:
			manifest, mfName = body, h.Name
		}
	}
	if len(names) == 0 || !strings.HasSuffix(names[0], ".ovf") {
		add("no .ovf descriptor as the first member")
	}
	if manifest == nil {
		add("no .mf manifest")
		return problems, nil
	}
	entries, bad := ParseManifest(manifest)
	for _, n := range bad {
		add("manifest line %d is malformed", n)
	}
	listed := map[string]bool{}
	for _, e := range entries {
		listed[e.File] = true
		got, ok := digests[e.File]
		if !ok {
			add("manifest names %s, which is not in the OVA", e.File)
			continue
		}
		if got[e.Algo] != e.Hex {
			add("%s: %s is %s, the manifest says %s", e.File, e.Algo, got[e.Algo], e.Hex)
		}
	}
	// A member the manifest leaves out could be changed unnoticed.
	for _, n := range names {
		if !listed[n] && n != mfName && !strings.HasSuffix(n, ".cert") {
			add("%s has no line in the manifest %s, so nothing protects it", n, mfName)
		}
	}
	return problems, nil
}

// VMDK checks a streamOptimized VMDK file (vmdk.Check).
func VMDK(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	_, ps, err := vmdk.Check(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return ps, nil
}

func sum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// ManifestEntry is one line of an OVA manifest.
type ManifestEntry struct {
	Algo, File, Hex string
	Line            int
}

// ParseManifest reads an .mf ("SHA256(file)= hex" lines); malformed lines
// are returned by number.
func ParseManifest(b []byte) ([]ManifestEntry, []int) {
	var (
		out []ManifestEntry
		bad []int
	)
	for i, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		m := mfLine.FindStringSubmatch(l)
		if m == nil {
			bad = append(bad, i+1)
			continue
		}
		want := map[string]int{"SHA1": 40, "SHA256": 64, "SHA512": 128}[m[1]]
		if len(m[3]) != want {
			bad = append(bad, i+1)
			continue
		}
		out = append(out, ManifestEntry{Algo: m[1], File: m[2], Hex: strings.ToLower(m[3]), Line: i + 1})
	}
	return out, bad
}

// OVAInfo is what an appliance's descriptor says.
type OVAInfo struct {
	Name      string   `json:"name"`
	OSType    string   `json:"os_type"`
	CPUs      int      `json:"cpus"`
	MemoryMiB int      `json:"memory_mib"`
	Disks     []int64  `json:"disk_capacities"`
	NICs      []string `json:"nics"`
	Members   []string `json:"members"`
}

// InspectOVA reads the descriptor of an OVA.
func InspectOVA(path string) (*OVAInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return inspectOVA(f, path)
}

// brokenOVA says why the archive's next header could not be read, and what
// to do: `ova inspect` of a truncated download said only "broken OVA (tar:
// unexpected EOF)".
func brokenOVA(path string, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s is truncated (the archive ends inside a member or header): download or build it again", path)
	}
	return fmt.Errorf("%s: broken OVA (tar: %v): is it an .ova? download or build it again", path, err)
}

func inspectOVA(f io.Reader, path string) (*OVAInfo, error) {
	tr := tar.NewReader(f)
	info := &OVAInfo{}
	var ovf []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, brokenOVA(path, err)
		}
		info.Members = append(info.Members, h.Name)
		if len(info.Members) > maxMembers {
			return nil, fmt.Errorf("%s has more than %d members: not an appliance", path, maxMembers)
		}
		if strings.HasSuffix(h.Name, ".ovf") && ovf == nil {
			if h.Size > MaxOVFSize {
				return nil, fmt.Errorf("%s: descriptor %s is %d bytes, over the %d a descriptor may have: not a real appliance", path, h.Name, h.Size, MaxOVFSize)
			}
			if ovf, err = io.ReadAll(tr); err != nil {
				return nil, fmt.Errorf("%s: %s is truncated (%v): download or build it again", path, h.Name, err)
			}
		}
	}
	if len(info.Members) == 0 {
		return nil, fmt.Errorf("%s is empty (no tar members): it is not an appliance; download or build it again", path)
	}
	if ovf == nil {
		return nil, fmt.Errorf("%s has no .ovf descriptor", path)
	}
	d, err := descriptor(ovf)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	d.Members = info.Members
	return d, nil
}

// descriptor reads what an OVF descriptor says; it must be an <Envelope>
// whose numbers are numbers.
func descriptor(ovf []byte) (*OVAInfo, error) {
	var env struct {
		XMLName xml.Name
		Disks   []struct {
			Capacity string `xml:"capacity,attr"`
			Units    string `xml:"capacityAllocationUnits,attr"`
		} `xml:"DiskSection>Disk"`
		VS struct {
			ID     string `xml:"id,attr"`
			OSDesc string `xml:"OperatingSystemSection>Description"`
			Items  []struct {
				Type       int    `xml:"ResourceType"`
				Quantity   int    `xml:"VirtualQuantity"`
				Connection string `xml:"Connection"`
			} `xml:"VirtualHardwareSection>Item"`
		} `xml:"VirtualSystem"`
	}
	if err := xml.Unmarshal(ovf, &env); err != nil {
		return nil, fmt.Errorf("the descriptor is not a valid OVF descriptor: %v", err)
	}
	if env.XMLName.Local != "Envelope" {
		return nil, fmt.Errorf("the descriptor has root <%s>, not an OVF <Envelope>", env.XMLName.Local)
	}
	info := &OVAInfo{Name: env.VS.ID, OSType: env.VS.OSDesc}
	for _, it := range env.VS.Items {
		switch it.Type {
		case 3:
			info.CPUs = it.Quantity
		case 4:
			info.MemoryMiB = it.Quantity
		case 10:
			info.NICs = append(info.NICs, it.Connection)
		}
	}
	for _, d := range env.Disks {
		var n int64
		fmt.Sscan(d.Capacity, &n)
		info.Disks = append(info.Disks, n)
	}
	return info, nil
}
