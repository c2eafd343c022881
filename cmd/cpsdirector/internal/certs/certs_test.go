package certs

import (
	"crypto/x509"
	"encoding/pem"
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
