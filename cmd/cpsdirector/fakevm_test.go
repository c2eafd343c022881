package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/certs"
)

// fakeVMs plays the software inside the VMs the director starts: every
// fake VM has the address 127.0.0.1, where the application manager
// listens on managerPort and agents on agentPort, each with the
// certificate the director put in that VM's user data. Like the real ones
// (conpaas.core.https.server), they accept only clients whose certificate
// the director's CA signed with role frontend, and answer JSON-RPC.
type fakeVMs struct {
	t                      *testing.T
	e                      *env
	managerPort, agentPort int

	mu       sync.Mutex
	calls    []string // "manager METHOD" / "agent METHOD"
	services int
	down     bool // the managers and agents do not answer yet
}

// setDown makes the managers and agents unavailable (still booting).
func (f *fakeVMs) setDown(d bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = d
}

func newFakeVMs(t *testing.T, e *env) *fakeVMs {
	f := &fakeVMs{t: t, e: e}
	for _, role := range []string{"manager", "agent"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if role == "manager" {
			f.managerPort = ln.Addr().(*net.TCPAddr).Port
		} else {
			f.agentPort = ln.Addr().(*net.TCPAddr).Port
		}
		role := role
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f.serve(role, w, r) }),
			TLSConfig: &tls.Config{
				ClientAuth: tls.RequireAnyClientCert,
				GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
					c, _, ok := f.cert(role)
					if !ok {
						return nil, fmt.Errorf("no %s VM yet", role)
					}
					return c, nil
				},
			},
		}
		go srv.ServeTLS(ln, "", "")
		t.Cleanup(func() { srv.Close() })
	}
	return f
}

var heredocRE = regexp.MustCompile(`(?s)cat <<EOF > /tmp/(cert|key|ca_cert)\.pem\n(.*?)\nEOF\n`)

// contextFiles returns the three PEM files a context writes to /tmp.
func contextFiles(ud string) map[string][]byte {
	m := map[string][]byte{}
	for _, x := range heredocRE.FindAllStringSubmatch(ud, -1) {
		m[x[1]] = []byte(strings.TrimRight(x[2], "\n") + "\n")
	}
	return m
}

// userData lists the user data of every VM the clouds were asked for, in
// creation order per cloud.
func (f *fakeVMs) userData() []string {
	var out []string
	for _, v := range f.e.nova.Servers() {
		out = append(out, string(v.UserData))
	}
	f.e.ec2.Mu().Lock()
	ids := keys(f.e.ec2.Instances)
	sort.Strings(ids)
	for _, id := range ids {
		out = append(out, string(f.e.ec2.Instances[id].UserData))
	}
	f.e.ec2.Mu().Unlock()
	return out
}

// cert returns the key pair of a VM of role (and its CA).
func (f *fakeVMs) cert(role string) (*tls.Certificate, []byte, bool) {
	for _, ud := range f.userData() {
		files := contextFiles(ud)
		if files["cert"] == nil {
			continue
		}
		pair, err := tls.X509KeyPair(files["cert"], files["key"])
		if err != nil {
			continue
		}
		leaf, _ := x509.ParseCertificate(pair.Certificate[0])
		if certs.Fields(leaf).Role == role {
			return &pair, files["ca_cert"], true
		}
	}
	return nil, nil, false
}

func (f *fakeVMs) serve(role string, w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	down := f.down
	f.mu.Unlock()
	if down {
		http.Error(w, "booting", http.StatusServiceUnavailable)
		return
	}
	// The director presents its own certificate, role frontend; a
	// manager also takes its user's (server.py _conpaas_callback_manager).
	if len(r.TLS.PeerCertificates) == 0 {
		http.Error(w, "no certificate", http.StatusForbidden)
		return
	}
	if who := certs.Fields(r.TLS.PeerCertificates[0]).Role; who != "frontend" && !(role == "manager" && who == "user") {
		http.Error(w, "not the director", http.StatusForbidden)
		return
	}
	var method string
	var params map[string]any
	if r.Method == http.MethodPost {
		var body struct {
			Method    string         `json:"method"`
			Params    map[string]any `json:"params"`
			ServiceID any            `json:"service_id"`
		}
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			http.Error(w, "bad json", 400)
			return
		}
		method, params = body.Method, body.Params
	} else {
		method = r.URL.Query().Get("method")
	}
	f.mu.Lock()
	f.calls = append(f.calls, role+" "+method)
	var result any = map[string]any{}
	switch method {
	case "add_service":
		f.services++
		result = map[string]any{"service_id": f.services}
	case "get_service_info":
		result = map[string]any{"state": "RUNNING", "type": "php"}
	case "list_nodes":
		result = map[string]any{"web": []string{"iaas1"}, "backend": []string{"iaas2", "iaas3"}}
	case "start_service":
		result = map[string]any{"state": "PROLOGUE"}
	case "check_process", "remove_service":
	default:
		f.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"error": "unknown method " + method, "id": "1"})
		return
	}
	f.mu.Unlock()
	_ = params
	json.NewEncoder(w).Encode(map[string]any{"result": result, "error": nil, "id": "1"})
}

func (f *fakeVMs) called(call string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == call {
			n++
		}
	}
	return n
}

// managerClient is the application manager calling the director back
// (conpaas.core.callbacker, https.client.https_post) with the manager
// certificate from its user data, trusting the director's CA from there.
func (f *fakeVMs) managerClient() *http.Client {
	f.t.Helper()
	pair, ca, ok := f.cert("manager")
	if !ok {
		f.t.Fatal("no manager VM")
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Timeout: 3 * time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, Certificates: []tls.Certificate{*pair}, MinVersion: tls.VersionTLS12}}}
}

// httpsPost is the original's https.client.https_post: multipart/form-data
// built by _encode_multipart_formdata (its fixed boundary, CRLF lines,
// service_id=0 added when absent, every value str()-ed), files as
// (name, filename, value).
func httpsPost(t *testing.T, hc *http.Client, url string, params [][2]string, files [][3]string) resp {
	t.Helper()
	const boundary = "----------_BoUnDaRy_StRiNg_$"
	var lines []string
	have := false
	for _, p := range params {
		have = have || p[0] == "service_id"
	}
	if !have {
		params = append(params, [2]string{"service_id", "0"})
	}
	for _, p := range params {
		lines = append(lines, "--"+boundary, fmt.Sprintf(`Content-Disposition: form-data; name="%s"`, p[0]), "", p[1])
	}
	for _, f := range files {
		lines = append(lines, "--"+boundary, fmt.Sprintf(`Content-Disposition: form-data; name="%s"; filename="%s"`, f[0], f[1]),
			"Content-Type: application/octet-stream", "", f[2])
	}
	lines = append(lines, "--"+boundary+"--", "")
	body := strings.Join(lines, "\r\n")
	req, _ := http.NewRequest("POST", url, bytes.NewReader([]byte(body)))
	req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
	r, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, r.Header.Get("Content-Type"), b}
}
