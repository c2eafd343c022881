package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/certs"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/db"
)

// BenchmarkListApp is one authenticated /listapp as cps-tools and the
// frontend poll it, through the handler (no TLS: the handshake is once per
// connection), on SQLite: what bounds scripts/bench/director.sh.
func BenchmarkListApp(b *testing.B) {
	dir := b.TempDir()
	ctx := context.Background()
	d, err := db.Open(ctx, config.Database{Driver: "sqlite", Path: filepath.Join(dir, "d.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	u, err := d.CreateUser(ctx, db.NewUser{Username: "alice", Key: "alice", PasswordHash: "x", Credit: 5, Email: sql.NullString{String: "a@x", Valid: true}})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		d.CreateApplication(ctx, u.UID, "app"+strconv.Itoa(i))
	}
	ca, _, err := certs.Ensure(filepath.Join(dir, "certs"), "127.0.0.1", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	bundle, err := ca.Issue(certs.Name{UID: strconv.FormatInt(u.UID, 10), ServiceLocator: "0", Role: "user", CN: "alice", O: "Contrail"}, 0, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	blk, _ := pem.Decode(bundle.Cert)
	leaf, _ := x509.ParseCertificate(blk.Bytes)
	s := &Server{Cfg: &config.Config{}, DB: d, CA: ca, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	h := s.Handler()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest(http.MethodGet, "/listapp?username=alice", nil)
			r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
		}
	})
}
