package verify

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/images/releases"
)

// ErrNoExpected means nothing says what the file's checksum should be.
var ErrNoExpected = errors.New("no expected checksum")

// Expected is the value a file is checked against, and where it came from.
type Expected struct {
	Algo   checksum.Algo `json:"algo"`
	Hex    string        `json:"hex"`
	Source string        `json:"source"`
}

// Options of File.
type Options struct {
	MD5       string // --md5: the expected MD5
	Catalogue string // catalogue file to look the file up in ("" for none)
	Structure bool   // also check the image's structure
	Deep      bool   // archives: stream through them and check the image inside
	Progress  checksum.Progress
}

// Report is the outcome for one file.
type Report struct {
	File     string            `json:"file"`
	Size     int64             `json:"size"`
	Expected *Expected         `json:"expected,omitempty"`
	Sums     map[string]string `json:"sums"`
	OK       bool              `json:"ok"`
	Mismatch string            `json:"mismatch,omitempty"`
	Kind     string            `json:"kind,omitempty"`
	Release  string            `json:"release,omitempty"`
	Problems []string          `json:"problems,omitempty"`
	Members  []Member          `json:"members,omitempty"`
}

// Lookup finds the expected value for path: --md5, then the catalogue (by
// file name), then the published releases (by file name). It also returns
// the kind of image the source says the file is ("" if unknown).
func Lookup(path string, opt Options) (*Expected, string, string, error) {
	if opt.MD5 != "" {
		h := strings.ToLower(strings.TrimSpace(opt.MD5))
		if a, ok := algoForLen(len(h)); !ok || a != checksum.MD5 || strings.Trim(h, "0123456789abcdef") != "" {
			return nil, "", "", fmt.Errorf("--md5 %q is not 32 hexadecimal digits", opt.MD5)
		}
		return &Expected{checksum.MD5, h, "--md5"}, "", "", nil
	}
	if opt.Catalogue != "" {
		c, err := catalogue.Load(opt.Catalogue)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, "", "", err
		}
		if c != nil {
			for _, a := range c.Artifacts {
				if filepath.Base(a.File) == filepath.Base(path) && a.MD5 != "" {
					return &Expected{checksum.MD5, a.MD5, "catalogue " + opt.Catalogue + " (" + a.Name + " " + a.Version + ")"}, a.Kind, "", nil
				}
			}
		}
	}
	if r := releases.ByFile(path); r != nil {
		return &Expected{checksum.MD5, r.MD5, "published ConPaaS " + r.Release + ": " + r.What}, r.Kind, r.Release, nil
	}
	return nil, "", "", fmt.Errorf("%w for %s: it is not in the catalogue nor a published ConPaaS file name; pass --md5 HEX or -c FILE.md5", ErrNoExpected, filepath.Base(path))
}

// File verifies path against exp (from Lookup, or a checksum file entry).
func File(ctx context.Context, path string, exp *Expected, kind string, opt Options) (*Report, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory; name the image file", path)
	}
	algos := []checksum.Algo{checksum.MD5, checksum.SHA1, checksum.SHA256, checksum.SHA512}
	sums, err := checksum.File(ctx, path, checksum.Options{Algos: algos, Progress: opt.Progress})
	if err != nil {
		return nil, err
	}
	rep := &Report{File: path, Size: st.Size(), Expected: exp, Kind: kind, Sums: map[string]string{}}
	for _, a := range algos {
		rep.Sums[string(a)] = sums.Get(a)
	}
	rep.OK = true
	if exp != nil && sums.Get(exp.Algo) != exp.Hex {
		rep.OK = false
		rep.Mismatch = fmt.Sprintf("%s is %s but %s says %s: the file is corrupt or incomplete, download it again", exp.Algo, sums.Get(exp.Algo), exp.Source, exp.Hex)
	}
	if r := releases.ByMD5(sums.Get(checksum.MD5)); r != nil {
		rep.Release = r.Release + ": " + r.What
	}
	isArchive := strings.HasSuffix(path, ".tar.gz") || strings.HasSuffix(path, ".tgz")
	switch {
	case isArchive && opt.Deep:
		ms, err := Archive(ctx, path, kind, checksum.MD5, checksum.SHA256)
		if err != nil {
			return nil, err
		}
		rep.Members = ms
		for _, m := range ms {
			for _, p := range m.Problems {
				rep.Problems = append(rep.Problems, m.Name+": "+p)
			}
		}
	case (opt.Structure || opt.Deep) && strings.HasSuffix(path, ".ova"):
		ps, err := OVA(path)
		if err != nil {
			return nil, err
		}
		rep.Problems = ps
	case (opt.Structure || opt.Deep) && !isArchive:
		ps, err := Structure(path, kind)
		if err != nil {
			return nil, err
		}
		rep.Problems = ps
	}
	if len(rep.Problems) > 0 {
		rep.OK = false
	}
	return rep, nil
}
