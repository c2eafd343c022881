package verify

import (
	"archive/tar"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"hash"
	"io"
	"os"
	"regexp"
	"strings"
)

var mfLine = regexp.MustCompile(`^(SHA1|SHA256|SHA512)\((.+)\)\s*=\s*([0-9a-fA-F]+)$`)

// OVA checks an appliance: a tar whose first member is the .ovf descriptor
// (well-formed XML, an ovf:Envelope), with a manifest (.mf) whose digests
// match the members, as VirtualBox checks on import. One line per problem.
func OVA(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		problems []string
		digests  = map[string]map[string]string{} // member -> algo -> hex
		manifest []byte
		names    []string
	)
	tr := tar.NewReader(f)
	for i := 0; ; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: broken OVA (tar: %v): download or build it again", path, err)
		}
		names = append(names, h.Name)
		s1, s256 := sha1.New(), sha256.New()
		var body []byte
		w := io.MultiWriter(s1, s256)
		if strings.HasSuffix(h.Name, ".ovf") || strings.HasSuffix(h.Name, ".mf") {
			b, err := io.ReadAll(io.TeeReader(tr, w))
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", path, h.Name, err)
			}
			body = b
		} else if _, err := io.Copy(w, tr); err != nil {
			return nil, fmt.Errorf("%s: %s is truncated (%v): download or build it again", path, h.Name, err)
		}
		digests[h.Name] = map[string]string{"SHA1": sum(s1), "SHA256": sum(s256)}
		switch {
		case strings.HasSuffix(h.Name, ".ovf"):
			if i != 0 {
				problems = append(problems, fmt.Sprintf("descriptor %s is member %d; OVF requires it first", h.Name, i+1))
			}
			var env struct {
				XMLName xml.Name
			}
			if err := xml.Unmarshal(body, &env); err != nil {
				problems = append(problems, fmt.Sprintf("descriptor %s is not well-formed XML: %v", h.Name, err))
			} else if env.XMLName.Local != "Envelope" {
				problems = append(problems, fmt.Sprintf("descriptor %s has root <%s>, not an OVF <Envelope>", h.Name, env.XMLName.Local))
			}
		case strings.HasSuffix(h.Name, ".mf"):
			manifest = body
		}
	}
	if len(names) == 0 || !strings.HasSuffix(names[0], ".ovf") {
		problems = append(problems, "no .ovf descriptor as the first member")
	}
	if manifest == nil {
		problems = append(problems, "no .mf manifest")
		return problems, nil
	}
	entries, bad := ParseManifest(manifest)
	for _, n := range bad {
		problems = append(problems, fmt.Sprintf("manifest line %d is malformed", n))
	}
	for _, e := range entries {
		got, ok := digests[e.File]
		if !ok {
			problems = append(problems, fmt.Sprintf("manifest names %s, which is not in the OVA", e.File))
			continue
		}
		if got[e.Algo] != "" && got[e.Algo] != e.Hex {
			problems = append(problems, fmt.Sprintf("%s: %s is %s, the manifest says %s", e.File, e.Algo, got[e.Algo], e.Hex))
		}
	}
	return problems, nil
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
	tr := tar.NewReader(f)
	info := &OVAInfo{}
	var ovf []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: broken OVA (tar: %v)", path, err)
		}
		info.Members = append(info.Members, h.Name)
		if strings.HasSuffix(h.Name, ".ovf") && ovf == nil {
			if ovf, err = io.ReadAll(tr); err != nil {
				return nil, err
			}
		}
	}
	if ovf == nil {
		return nil, fmt.Errorf("%s has no .ovf descriptor", path)
	}
	var env struct {
		Disks []struct {
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
		return nil, fmt.Errorf("%s: descriptor is not valid XML: %v", path, err)
	}
	info.Name, info.OSType = env.VS.ID, env.VS.OSDesc
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
