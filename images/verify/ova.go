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
	for i, l := range strings.Split(strings.TrimSpace(string(manifest)), "\n") {
		m := mfLine.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			problems = append(problems, fmt.Sprintf("manifest line %d is malformed: %q", i+1, l))
			continue
		}
		got, ok := digests[m[2]]
		if !ok {
			problems = append(problems, fmt.Sprintf("manifest names %s, which is not in the OVA", m[2]))
			continue
		}
		if want := strings.ToLower(m[3]); got[m[1]] != "" && got[m[1]] != want {
			problems = append(problems, fmt.Sprintf("%s: %s is %s, the manifest says %s", m[2], m[1], got[m[1]], want))
		}
	}
	return problems, nil
}

func sum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }
