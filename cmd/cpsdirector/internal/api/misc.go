package api

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	text(w, http.StatusOK, Version)
}

// supportBool answers Python's str(bool): "True" or "False".
func (s *Server) supportBool(get func() bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := "False"
		if get() {
			v = "True"
		}
		text(w, http.StatusOK, v)
	}
}

// debugLevel is /debug_level/<type>: [conpaas] <type>_debug_level, 0 if
// unset.
func (s *Server) debugLevel(w http.ResponseWriter, r *http.Request) {
	text(w, http.StatusOK, strconv.Itoa(s.Cfg.DebugLevels[strings.ToLower(r.PathValue("type"))]))
}

// noOpenID answers the original's OpenID pages (idp.py), which cps does
// not have: logins by the uuid or OpenID an identity provider assigned go
// through /login.
func (s *Server) noOpenID(w http.ResponseWriter, r *http.Request) {
	text(w, http.StatusNotImplemented, "OpenID login pages are not supported by this director (cpsdirector)")
}

var dataFileRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// downloadData is /download_data/<fileid>: a file of USERDATA_DIR (what
// manifests exported), "" when missing, as the original answered.
func (s *Server) downloadData(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if !dataFileRE.MatchString(name) {
		text(w, http.StatusOK, "")
		return
	}
	p := filepath.Join(s.Cfg.UserDataDir, name)
	st, err := os.Lstat(p)
	if err != nil || !st.Mode().IsRegular() {
		text(w, http.StatusOK, "")
		return
	}
	f, err := os.Open(p)
	if err != nil {
		text(w, http.StatusOK, "")
		return
	}
	defer f.Close()
	http.ServeContent(w, r, name, st.ModTime(), f)
}
