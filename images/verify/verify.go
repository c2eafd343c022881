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
	"github.com/conpaas/cps/internal/input"
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
	Checked  []string          `json:"checked,omitempty"` // what --structure or --deep checked and found sound
	Problems []string          `json:"problems,omitempty"`
	Members  []Member          `json:"members,omitempty"`
}

// Lookup finds the expected value for path: --md5; then the catalogue
// named by opt.Catalogue; then what `cpsimage build` writes beside an
// image: FILE.sha256 or FILE.md5 (md5sum format), then catalogue.json in
// the file's directory; then the published releases (by file name). It
// also returns the kind of image the source says the file is ("" if
// unknown).
func Lookup(path string, opt Options) (*Expected, string, string, error) {
	if opt.MD5 != "" {
		h := strings.ToLower(strings.TrimSpace(opt.MD5))
		if a, ok := algoForLen(len(h)); !ok || a != checksum.MD5 || strings.Trim(h, "0123456789abcdef") != "" {
			return nil, "", "", fmt.Errorf("--md5 %q is not 32 hexadecimal digits", opt.MD5)
		}
		return &Expected{checksum.MD5, h, "--md5"}, "", "", nil
	}
	if opt.Catalogue != "" {
		exp, kind, err := inCatalogue(opt.Catalogue, path)
		if err != nil || exp != nil {
			return exp, kind, "", err
		}
	}
	besideCat := filepath.Join(filepath.Dir(path), "catalogue.json")
	catExp, kind, err := inCatalogue(besideCat, path)
	if err != nil {
		return nil, "", "", err
	}
	if exp, err := inSideFile(path); err != nil || exp != nil {
		return exp, kind, "", err
	}
	if catExp != nil {
		return catExp, kind, "", nil
	}
	if r := releases.ByFile(path); r != nil {
		return &Expected{checksum.MD5, r.MD5, "published ConPaaS " + r.Release + ": " + r.What}, r.Kind, r.Release, nil
	}
	return nil, "", "", fmt.Errorf("%w for %s: no %s.md5 or %s.sha256 beside it, it is not in %s nor a published ConPaaS file name; pass --md5 HEX or -c FILE.md5",
		ErrNoExpected, path, filepath.Base(path), filepath.Base(path), catalogues(opt.Catalogue, besideCat))
}

// catalogues names the catalogues Lookup read, for its error.
func catalogues(a, b string) string {
	if a == "" || filepath.Clean(a) == filepath.Clean(b) {
		return b
	}
	return a + " or " + b
}

// inCatalogue looks path up by file name in the catalogue at catPath (nil
// when there is no such catalogue or entry).
func inCatalogue(catPath, path string) (*Expected, string, error) {
	c, err := catalogue.Load(catPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	for _, a := range c.Artifacts {
		if filepath.Base(a.File) == filepath.Base(path) && a.MD5 != "" {
			return &Expected{checksum.MD5, a.MD5, "catalogue " + catPath + " (" + a.Name + " " + a.Version + ")"}, string(a.Kind), nil
		}
	}
	return nil, "", nil
}

// inSideFile reads PATH.sha256, else PATH.md5 (nil when neither exists).
func inSideFile(path string) (*Expected, error) {
	for _, ext := range []string{".sha256", ".md5"} {
		f, err := os.Open(path + ext)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		entries, _, err := ParseSumFile(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path+ext, err)
		}
		for _, e := range entries {
			if filepath.Base(e.File) == filepath.Base(path) {
				return &Expected{e.Algo, e.Hex, fmt.Sprintf("%s line %d", path+ext, e.Line)}, nil
			}
		}
		return nil, fmt.Errorf("%s does not list %s; pass --md5 HEX or -c SUMFILE", path+ext, filepath.Base(path))
	}
	return nil, nil
}

// File verifies path against exp (from Lookup, or a checksum file entry).
// path may be a block device, or a pipe or FIFO streamed to EOF ("-" is
// standard input); the structure checks need random access and refuse a
// stream.
func File(ctx context.Context, path string, exp *Expected, kind string, opt Options) (*Report, error) {
	in, err := input.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	isArchive := strings.HasSuffix(path, ".tar.gz") || strings.HasSuffix(path, ".tgz")
	if opt.Structure || opt.Deep {
		what := "--structure"
		if isArchive {
			what = "--deep" // reads the archive a second time
		}
		if err := in.RequireSeekable(what); err != nil {
			return nil, err
		}
	}
	algos := []checksum.Algo{checksum.MD5, checksum.SHA1, checksum.SHA256, checksum.SHA512}
	sums, err := checksum.Input(ctx, in, checksum.Options{Algos: algos, Progress: opt.Progress})
	if err != nil {
		return nil, err
	}
	rep := &Report{File: path, Size: sums.Size, Expected: exp, Kind: kind, Sums: map[string]string{}}
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
	switch {
	case isArchive && opt.Deep:
		ms, err := Archive(ctx, path, kind, checksum.MD5, checksum.SHA256)
		if err != nil {
			return nil, err
		}
		rep.Members = ms
		for _, m := range ms {
			for _, c := range m.Checked {
				rep.Checked = append(rep.Checked, m.Name+": "+c)
			}
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
		if len(ps) == 0 {
			rep.Checked = []string{"OVA: the descriptor (OVF) and the manifest's digest of every member (all of them listed, every algorithm it uses), each VMDK's header, grains, tables and directory"}
		}
	case (opt.Structure || opt.Deep) && strings.HasSuffix(path, ".vmdk"):
		ps, err := VMDK(path)
		if err != nil {
			return nil, err
		}
		rep.Problems = ps
		if len(ps) == 0 {
			rep.Checked = []string{"VMDK: streamOptimized header, every grain inflates, grain tables and directory point at the grains stored"}
		}
	case (opt.Structure || opt.Deep) && !isArchive:
		checked, ps, err := Structure(path, kind)
		if err != nil {
			return nil, err
		}
		rep.Checked, rep.Problems = checked, ps
	}
	if len(rep.Problems) > 0 {
		rep.OK = false
	}
	return rep, nil
}
