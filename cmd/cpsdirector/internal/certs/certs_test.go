package certs

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestIssueEmailMustBeASCII: the subject's emailAddress is an IA5String.
// Issue used to put any bytes there, so a user registered with "é@x" got
// from /getcerts a certificate that Go's TLS stack (the director's own)
// refuses to parse: every handshake with it failed with "decode error".
// Now Issue refuses such an address instead of issuing a dead certificate.
func TestIssueEmailMustBeASCII(t *testing.T) {
	now := time.Now()
	a, _, err := Ensure(t.TempDir(), "127.0.0.1", now)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		email string
		ok    bool
	}{
		{"alice@example.org", true},
		{"", true}, // no emailAddress at all
		{"é@example.org", false},
		{"a@\u4f8b\u3048.jp", false},
	} {
		b, err := a.Issue(Name{UID: "1", ServiceLocator: "0", Role: RoleUser, CN: "alice", O: "Contrail", Email: c.email}, 1, now)
		if !c.ok {
			if err == nil {
				t.Errorf("Issue with email %q: no error", c.email)
			}
			continue
		}
		if err != nil {
			t.Errorf("Issue with email %q: %v", c.email, err)
			continue
		}
		blk, _ := pem.Decode(b.Cert)
		if blk == nil {
			t.Fatalf("email %q: no PEM", c.email)
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			t.Errorf("email %q: the issued certificate does not parse: %v", c.email, err)
		}
	}
}

// TestEnsureKeepsDamagedCA: with ca_key.pem missing (or ca_cert.pem), the
// read error was taken for "no CA yet" and `cpsdirector certs` created a
// new CA over the old certificate: every user, manager and agent
// certificate stopped working. A CA that loads only in part is now
// reported (ErrCADamaged, saying what to restore) and left as it is.
func TestEnsureKeepsDamagedCA(t *testing.T) {
	now := time.Now()
	good := t.TempDir()
	if _, _, err := Ensure(good, "127.0.0.1", now); err != nil {
		t.Fatal(err)
	}
	caCert, _ := os.ReadFile(filepath.Join(good, CACertFile))
	caKey, _ := os.ReadFile(filepath.Join(good, CAKeyFile))
	for _, c := range []struct {
		name       string
		cert, key  []byte // nil: file absent
		wantCreate bool
	}{
		{"key missing", caCert, nil, false},
		{"certificate missing", nil, caKey, false},
		{"certificate truncated", caCert[:100], caKey, false},
		{"key empty", caCert, []byte{}, false},
		{"neither: a new CA", nil, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for f, b := range map[string][]byte{CACertFile: c.cert, CAKeyFile: c.key} {
				if b != nil {
					os.WriteFile(filepath.Join(dir, f), b, 0o600)
				}
			}
			_, res, err := Ensure(dir, "127.0.0.1", now)
			if c.wantCreate {
				if err != nil || !res.CACreated {
					t.Fatalf("Ensure: %v %+v", err, res)
				}
				return
			}
			if !errors.Is(err, ErrCADamaged) || !strings.Contains(err.Error(), "restore ca_cert.pem and ca_key.pem from a backup") {
				t.Fatalf("Ensure: %v", err)
			}
			for f, b := range map[string][]byte{CACertFile: c.cert, CAKeyFile: c.key} {
				got, rerr := os.ReadFile(filepath.Join(dir, f))
				if b == nil && rerr == nil || b != nil && !bytes.Equal(got, b) {
					t.Errorf("%s changed", f)
				}
			}
			if _, err := Load(dir); !errors.Is(err, ErrCADamaged) {
				t.Errorf("Load: %v", err)
			}
		})
	}
}

// TestEnsureConcurrent: concurrent Ensure calls on an empty CERT_DIR (two
// `cpsdirector certs` at once) each created a CA, and could leave
// cert.pem and key.pem from different calls. Now exactly one creates the
// CA, all return it, and the files load as a matching set.
func TestEnsureConcurrent(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	const n = 6
	var wg sync.WaitGroup
	created := make(chan bool, n)
	fps := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, res, err := Ensure(dir, "127.0.0.1", now)
			if err != nil {
				t.Error(err)
				return
			}
			created <- res.CACreated
			fps <- string(a.CAPEM)
		}()
	}
	wg.Wait()
	close(created)
	close(fps)
	count := 0
	for c := range created {
		if c {
			count++
		}
	}
	if count != 1 {
		t.Errorf("%d calls created a CA, want 1", count)
	}
	first := ""
	for fp := range fps {
		if first == "" {
			first = fp
		} else if fp != first {
			t.Error("the calls returned different CAs")
		}
	}
	a, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if string(a.CAPEM) != first {
		t.Error("the CA on disk is not the one returned")
	}
}

// A key generation waits while GOMAXPROCS others run (one /create_nodes
// of many nodes starts one per node), and runs once one of them ends.
func TestKeyGenerationsBounded(t *testing.T) {
	for range cap(keySlots) {
		keySlots <- struct{}{} // every slot taken, as by running generations
	}
	done := make(chan error, 1)
	go func() {
		_, err := newKey()
		done <- err
	}()
	select {
	case <-done:
		t.Fatal("a key was generated while every slot was taken")
	case <-time.After(300 * time.Millisecond):
	}
	<-keySlots // one generation ends
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for range cap(keySlots) - 1 {
		<-keySlots
	}
}
