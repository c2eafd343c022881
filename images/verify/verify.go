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
	// From a catalogue entry: the SHA-256 and size it records, which
	// must match too, and the kind of image it says the file is.
	SHA256 string `json:"sha256,omitempty"`
	Size   *int64 `json:"size,omitempty"`
	Kind   string `json:"kind,omitempty"`
	// Candidates are the catalogue entries (several versions) that name
	// a file like this one; the file is checked against each and is
	// sound if it is one of them. Set only when there are two or more.
	Candidates []*Expected `json:"candidates,omitempty"`
}

// matches says whether sums (and size) are what e expects.
func (e *Expected) matches(sums checksum.Sums) bool {
	return e.mismatch(sums) == ""
}

// mismatch says how sums differ from e ("" if they do not).
func (e *Expected) mismatch(sums checksum.Sums) string {
	if len(e.Candidates) > 0 {
		var each []string
		for _, c := range e.Candidates {
			if c.matches(sums) {
				return ""
			}
			// "catalogue C (conpaas 1)" among "catalogue C": "conpaas 1".
			each = append(each, fmt.Sprintf("%s (%s %s)", strings.Trim(strings.TrimPrefix(c.Source, e.Source), " ()"), c.Algo, c.Hex))
		}
		return fmt.Sprintf("%s is %s but %s lists %s: the file is none of them, it is corrupt or incomplete, download it again",
			e.Algo, sums.Get(e.Algo), e.Source, strings.Join(each, ", "))
	}
	if got := sums.Get(e.Algo); got != e.Hex {
		return fmt.Sprintf("%s is %s but %s says %s: the file is corrupt or incomplete, download it again", e.Algo, got, e.Source, e.Hex)
	}
	if e.SHA256 != "" && sums.Get(checksum.SHA256) != "" && sums.Get(checksum.SHA256) != e.SHA256 {
		return fmt.Sprintf("%s is %s but %s says %s: the file is corrupt or incomplete, download it again", checksum.SHA256, sums.Get(checksum.SHA256), e.Source, e.SHA256)
	}
	if e.Size != nil && sums.Size != *e.Size {
		return fmt.Sprintf("the size is %d bytes but %s says %d: the file is corrupt or incomplete, download it again", sums.Size, e.Source, *e.Size)
	}
	return ""
}

// pick resolves candidates once the file's sums are known: the entry the
// file is (the first, when several entries record the same bytes), or e
// itself when it is none of them.
func (e *Expected) pick(sums checksum.Sums) *Expected {
	var hits []*Expected
	for _, c := range e.Candidates {
		if c.matches(sums) {
			hits = append(hits, c)
		}
	}
	if len(hits) == 0 {
		return e
	}
	h := *hits[0]
	for _, o := range hits[1:] {
		h.Source += "; also " + o.Source
	}
	return &h
}

// Options of File.
type Options struct {
	MD5       string // --md5: the expected MD5
	Catalogue string // catalogue file to look the file up in ("" for none)
	Name      string // only the catalogue's artifacts of this name ("" for any)
	Version   string // only the catalogue's artifacts of this version ("" for any)
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
		return &Expected{Algo: checksum.MD5, Hex: h, Source: "--md5"}, "", "", nil
	}
	if opt.Catalogue != "" {
		exp, kind, err := inCatalogue(opt.Catalogue, path, opt)
		if err != nil || exp != nil {
			return exp, kind, "", err
		}
	}
	besideCat := filepath.Join(filepath.Dir(path), "catalogue.json")
	catExp, kind, err := inCatalogue(besideCat, path, opt)
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
		return &Expected{Algo: checksum.MD5, Hex: r.MD5, Source: "published ConPaaS " + r.Release + ": " + r.What}, r.Kind, r.Release, nil
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

// inCatalogue looks path up in the catalogue at catPath (nil when there is
// no such catalogue or entry). An entry is the file when its path (relative
// to the catalogue's directory) is path, else when its file name is path's:
// a catalogue kept beside downloaded images. Several entries can name the
// same file (versions built to one output name): they are narrowed by
// --name, --version and the file's size, and the rest are all candidates
// that File tells apart by the digest. The first entry with the file name
// is never taken for granted.
func inCatalogue(catPath, path string, opt Options) (*Expected, string, error) {
	c, err := catalogue.Load(catPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, "", err
	}
	catDir, err := filepath.Abs(filepath.Dir(catPath))
	if err != nil {
		return nil, "", err
	}
	var same, byName []catalogue.Artifact
	for _, a := range c.Artifacts {
		if (opt.Name != "" && a.Name != opt.Name) || (opt.Version != "" && a.Version != opt.Version) {
			continue
		}
		f := a.File
		if !filepath.IsAbs(f) {
			f = filepath.Join(catDir, f)
		}
		switch {
		case filepath.Clean(f) == abs:
			same = append(same, a)
		case filepath.Base(a.File) == filepath.Base(path):
			byName = append(byName, a)
		}
	}
	cands := same
	if len(cands) == 0 {
		cands = byName
	}
	if len(cands) == 0 {
		return nil, "", nil
	}
	if len(cands) > 1 {
		// Entries of another size cannot be this file; if none has its
		// size, all stay, and the mismatch lists them.
		if _, size, err := input.Stat(path); err == nil && size >= 0 {
			var sized []catalogue.Artifact
			for _, a := range cands {
				if a.Size == size {
					sized = append(sized, a)
				}
			}
			if len(sized) > 0 {
				cands = sized
			}
		}
	}
	exps := make([]*Expected, len(cands))
	for i, a := range cands {
		size := a.Size
		exps[i] = &Expected{Algo: checksum.MD5, Hex: a.MD5, SHA256: a.SHA256, Size: &size, Kind: string(a.Kind),
			Source: "catalogue " + catPath + " (" + a.Name + " " + a.Version + ")"}
	}
	if len(exps) == 1 {
		return exps[0], exps[0].Kind, nil
	}
	agg := &Expected{Algo: checksum.MD5, Source: "catalogue " + catPath, Candidates: exps}
	// The kind is known before hashing only if every candidate agrees.
	kind := string(cands[0].Kind)
	for _, a := range cands[1:] {
		if string(a.Kind) != kind {
			kind = ""
		}
	}
	agg.Kind = kind
	return agg, kind, nil
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
				return &Expected{Algo: e.Algo, Hex: e.Hex, Source: fmt.Sprintf("%s line %d", path+ext, e.Line)}, nil
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
	if exp != nil && len(exp.Candidates) > 0 {
		// Several catalogue entries name this file: it is the one
		// whose digest it has.
		exp = exp.pick(sums)
		if kind == "" {
			kind = exp.Kind
		}
	}
	rep := &Report{File: path, Size: sums.Size, Expected: exp, Kind: kind, Sums: map[string]string{}}
	for _, a := range algos {
		rep.Sums[string(a)] = sums.Get(a)
	}
	rep.OK = true
	if exp != nil {
		if m := exp.mismatch(sums); m != "" {
			rep.OK = false
			rep.Mismatch = m
		}
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
