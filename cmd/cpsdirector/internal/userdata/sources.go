package userdata

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Sources finds templates as the original did, in CONF_DIR/scripts and
// CONF_DIR/config (what its installer copied there from conpaas-services),
// and else inside ConPaaS.tar.gz (which holds the same two directories
// under ConPaaS/), re-read when the tarball changes.
type Sources struct {
	ConfDir string
	Tarball string

	mu    sync.Mutex
	mtime time.Time
	size  int64
	tar   map[string][]byte
}

// maxTemplate bounds what is kept of one file.
const maxTemplate = 1 << 20

// Get implements Templates.
func (s *Sources) Get(p string) ([]byte, bool) {
	if !fs.ValidPath(p) || !(strings.HasPrefix(p, "scripts/") || strings.HasPrefix(p, "config/")) {
		return nil, false
	}
	if s.ConfDir != "" {
		if b, err := os.ReadFile(filepath.Join(s.ConfDir, filepath.FromSlash(p))); err == nil {
			return b, true
		}
	}
	m := s.tarball()
	b, ok := m[p]
	return b, ok
}

func (s *Sources) tarball() map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := os.Stat(s.Tarball)
	if err != nil {
		s.tar = nil
		return nil
	}
	if s.tar != nil && st.ModTime().Equal(s.mtime) && st.Size() == s.size {
		return s.tar
	}
	m, err := readTemplates(s.Tarball)
	if err != nil {
		// A tarball that is not gzip+tar: the built-in templates serve,
		// and `cpsdirector check` reports the tarball.
		m = map[string][]byte{}
	}
	s.tar, s.mtime, s.size = m, st.ModTime(), st.Size()
	return m
}

func readTemplates(p string) (map[string][]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(gz)
	m := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return m, nil
		}
		if err != nil {
			return m, err
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		rel, ok := strings.CutPrefix(name, "ConPaaS/")
		if !ok || h.Typeflag != tar.TypeReg || h.Size > maxTemplate || !(strings.HasPrefix(rel, "scripts/") || strings.HasPrefix(rel, "config/")) {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxTemplate))
		if err != nil {
			return m, err
		}
		m[rel] = b
	}
}
