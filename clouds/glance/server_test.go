package glance

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/conpaas/cps/clouds/register"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/plan"
	"github.com/conpaas/cps/test/glanceserver"
)

// sparseImage writes a size-byte sparse file with random 1 MiB blocks at offs.
func sparseImage(t *testing.T, size int64, offs ...int64) (string, checksum.Sums) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "conpaas.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, off := range offs {
		b := make([]byte, 1<<20)
		rand.Read(b)
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	sums, err := checksum.File(context.Background(), p, checksum.Options{Algos: []checksum.Algo{checksum.MD5, checksum.SHA512}})
	if err != nil {
		t.Fatal(err)
	}
	return p, sums
}

func listIDs(t *testing.T, tg *Target, name string) []string {
	t.Helper()
	sc, _, _ := tg.Client(context.Background(), "")
	pages, err := images.List(sc, images.ListOpts{Name: name}).AllPages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	all, err := images.ExtractImages(pages)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, im := range all {
		ids = append(ids, im.ID)
	}
	return ids
}

// TestRealGlance registers images in Debian's glance-api (noauth, SQLite,
// file store) and checks bytes, checksums, properties, idempotency, the
// catalogue, and cleanup after failures.
func TestRealGlance(t *testing.T) {
	srv := glanceserver.Start(t)
	const mib = 1 << 20
	img, sums := sparseImage(t, 64*mib, 0, 17*mib, 40*mib, 63*mib)
	reg := plan.Register{Name: "os", Target: plan.TargetGlance, Image: "conpaas",
		Properties: map[string]string{"hw_disk_bus": "virtio", "os_type": "linux"}}
	art := register.Artifact{Path: img, Name: "conpaas", Version: "2.1.0", Kind: plan.KindRaw, Arch: "amd64"}
	tg := &Target{Endpoint: srv.URL}
	ctx := context.Background()
	cat := filepath.Join(t.TempDir(), "catalogue.json")
	regs, err := register.PrepareAndRun(ctx, tg, reg, art, register.Options{}, cat)
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 1 || regs[0].ImageID == "" || regs[0].Cloud != "openstack" {
		t.Fatalf("registrations = %+v", regs)
	}
	id := regs[0].ImageID
	sc, _, _ := tg.Client(ctx, "")

	t.Run("metadata", func(t *testing.T) {
		im, err := images.Get(ctx, sc, id).Extract()
		if err != nil {
			t.Fatal(err)
		}
		if im.Name != "conpaas-2.1.0" || im.DiskFormat != "raw" || im.ContainerFormat != "bare" ||
			im.Visibility != images.ImageVisibilityPrivate || im.SizeBytes != 64*mib {
			t.Errorf("image = name %q disk %q container %q visibility %q size %d", im.Name, im.DiskFormat, im.ContainerFormat, im.Visibility, im.SizeBytes)
		}
		if im.Checksum != sums.MD5 || im.Properties["os_hash_value"] != sums.SHA512 {
			t.Errorf("checksums = %s / %v, want %s / %s", im.Checksum, im.Properties["os_hash_value"], sums.MD5, sums.SHA512)
		}
		want := map[string]string{"architecture": "x86_64", "hw_disk_bus": "virtio", "os_type": "linux", "os_distro": "debian", "conpaas_version": "2.1.0"}
		for k, v := range want {
			if im.Properties[k] != v {
				t.Errorf("property %s = %v, want %s", k, im.Properties[k], v)
			}
		}
	})

	t.Run("download", func(t *testing.T) {
		rc, err := imagedata.Download(ctx, sc, id).Extract()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		got, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("downloaded %d bytes differ from the %d-byte image", len(got), len(want))
		}
	})

	t.Run("catalogue", func(t *testing.T) {
		c, err := catalogue.Load(cat)
		if err != nil {
			t.Fatal(err)
		}
		a := c.Find("conpaas")
		if a == nil || len(a.Registered) != 1 || a.Registered[0].ImageID != id || a.Registered[0].Target != plan.TargetGlance {
			t.Fatalf("catalogue entry = %+v", a)
		}
	})

	t.Run("idempotent", func(t *testing.T) {
		a := art
		a.Sums = sums
		regs, err := register.PrepareAndRun(ctx, tg, reg, a, register.Options{}, "")
		if err != nil {
			t.Fatal(err)
		}
		if regs[0].ImageID != id {
			t.Errorf("second registration made image %s, want reuse of %s", regs[0].ImageID, id)
		}
		if ids := listIDs(t, tg, "conpaas-2.1.0"); len(ids) != 1 {
			t.Errorf("images named conpaas-2.1.0: %v, want exactly one", ids)
		}
	})

	// Failures must leave no image behind and the catalogue untouched.
	failures := []struct {
		name string
		tg   func(cancel context.CancelFunc) *Target
		art  func(register.Artifact) register.Artifact
		is   error
	}{
		{"cancel-mid-upload", func(cancel context.CancelFunc) *Target {
			return &Target{Endpoint: srv.URL, onRead: func(sent int64) {
				if sent >= 20*mib {
					cancel()
				}
			}}
		}, func(a register.Artifact) register.Artifact { return a }, context.Canceled},
		{"md5-differs-from-catalogue", func(context.CancelFunc) *Target { return &Target{Endpoint: srv.URL} },
			func(a register.Artifact) register.Artifact {
				a.Sums.MD5 = "00000000000000000000000000000000"
				return a
			}, nil},
	}
	for _, c := range failures {
		t.Run(c.name, func(t *testing.T) {
			before, _ := os.ReadFile(cat)
			a := c.art(art)
			a.Name = "fail-" + c.name
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			var created string
			ftg := c.tg(cancel)
			ftg.BeforeUpload = func(id string) { created = id }
			_, err := register.PrepareAndRun(cctx, ftg, reg, a, register.Options{}, cat)
			if err == nil {
				t.Fatal("registration succeeded, want an error")
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v, want %v", err, c.is)
			}
			if created == "" {
				t.Fatal("no image was created before the failure; the test injects too early")
			}
			if ids := listIDs(t, tg, a.Name+"-2.1.0"); len(ids) != 0 {
				t.Errorf("half-created images left in Glance: %v", ids)
			}
			if after, _ := os.ReadFile(cat); !bytes.Equal(before, after) {
				t.Errorf("catalogue changed by a failed registration")
			}
		})
	}
}

// statuses lists the images named name as id -> status.
func statuses(t *testing.T, sc *gophercloud.ServiceClient, name string) map[string]images.ImageStatus {
	t.Helper()
	pages, err := images.List(sc, images.ListOpts{Name: name}).AllPages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	all, err := images.ExtractImages(pages)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]images.ImageStatus{}
	for _, im := range all {
		m[im.ID] = im.Status
	}
	return m
}

// TestGlanceRerun: re-runs against the real glance-api. A glance-api killed
// mid-upload leaves its image "saving"; the next run deletes that leftover
// of the same bytes instead of adding a second image beside it. An image
// of the name with other bytes stops a run before it uploads, unless
// -force-new-name or -replace.
func TestGlanceRerun(t *testing.T) {
	srv := glanceserver.Start(t)
	const mib = 1 << 20
	ctx := context.Background()
	sc := NoAuthClient(srv.URL)
	img, sums := sparseImage(t, 48*mib, 0, 30*mib, 47*mib)
	art := register.Artifact{Path: img, Name: "conpaas", Version: "2.1.0", Kind: plan.KindRaw, Arch: "amd64", Sums: sums}
	reg := plan.Register{Name: "os", Target: plan.TargetGlance}
	top := t // the restarted glance-api serves the later subtests too

	t.Run("killed-mid-upload", func(t *testing.T) {
		var once sync.Once
		tg := &Target{Endpoint: srv.URL, onRead: func(sent int64) {
			if sent >= 20*mib {
				once.Do(srv.Kill)
			}
		}}
		if _, err := register.PrepareAndRun(ctx, tg, reg, art, register.Options{}, ""); err == nil {
			t.Fatal("the upload survived glance-api's death")
		}
		srv.Restart(top)
		left := statuses(t, sc, "conpaas-2.1.0")
		if len(left) != 1 {
			t.Fatalf("after the kill: %v, want one image left saving", left)
		}
		var stale string
		for id, st := range left {
			if st != images.ImageStatusSaving {
				t.Fatalf("the killed upload left %s %s, want saving", id, st)
			}
			stale = id
		}
		regs, err := register.PrepareAndRun(ctx, &Target{Endpoint: srv.URL}, reg, art, register.Options{}, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := statuses(t, sc, "conpaas-2.1.0"); len(got) != 1 || got[regs[0].ImageID] != images.ImageStatusActive {
			t.Errorf("after the re-run: %v, want only %s, active (the stale %s deleted)", got, regs[0].ImageID, stale)
		}
	})

	other, osums := sparseImage(t, 8*mib, 0)
	changed := art
	changed.Path, changed.Sums = other, osums
	tg := &Target{Endpoint: srv.URL}
	t.Run("other-bytes", func(t *testing.T) {
		before := statuses(t, sc, "conpaas-2.1.0")
		_, err := register.PrepareAndRun(ctx, tg, reg, changed, register.Options{}, "")
		if err == nil || !strings.Contains(err.Error(), "with other bytes") || !strings.Contains(err.Error(), "-replace") || !strings.Contains(err.Error(), "nothing was uploaded") {
			t.Fatalf("got %v", err)
		}
		if got := statuses(t, sc, "conpaas-2.1.0"); !reflect.DeepEqual(got, before) {
			t.Errorf("images changed: %v -> %v", before, got)
		}
	})
	t.Run("force-new-name", func(t *testing.T) {
		regs, err := register.PrepareAndRun(ctx, tg, reg, changed, register.Options{ForceNewName: true}, "")
		if err != nil {
			t.Fatal(err)
		}
		im, err := images.Get(ctx, sc, regs[0].ImageID).Extract()
		if err != nil || !strings.HasPrefix(im.Name, "conpaas-2.1.0-") || len(statuses(t, sc, "conpaas-2.1.0")) != 1 {
			t.Errorf("-force-new-name made %+v (%v)", im, err)
		}
	})
	t.Run("replace", func(t *testing.T) {
		old := statuses(t, sc, "conpaas-2.1.0")
		regs, err := register.PrepareAndRun(ctx, tg, reg, changed, register.Options{Replace: true}, "")
		if err != nil {
			t.Fatal(err)
		}
		got := statuses(t, sc, "conpaas-2.1.0")
		if len(got) != 1 || got[regs[0].ImageID] != images.ImageStatusActive {
			t.Errorf("-replace: %v, want only the new %s (the old %v deleted)", got, regs[0].ImageID, old)
		}
	})
}

// TestGlanceSHA512: os_hash_value is compared with the SHA-512 computed
// while sending, also when the catalogue's MD5 is known. A proxy in front
// of the real glance-api reports another os_hash_value: the run fails.
func TestGlanceSHA512(t *testing.T) {
	srv := glanceserver.Start(t)
	target, _ := url.Parse(srv.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method != http.MethodGet || !strings.HasPrefix(resp.Request.URL.Path, "/v2/images/") {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		b = regexp.MustCompile(`"os_hash_value": ?"[0-9a-f]{128}"`).ReplaceAll(b, []byte(`"os_hash_value": "`+strings.Repeat("0", 128)+`"`))
		resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		resp.Header.Del("Content-Length")
		return nil
	}
	proxy := httptest.NewServer(rp)
	defer proxy.Close()
	img, sums := sparseImage(t, 4<<20, 0)
	art := register.Artifact{Path: img, Name: "sha", Version: "1", Kind: plan.KindRaw, Arch: "amd64", Sums: checksum.Sums{Size: sums.Size, MD5: sums.MD5}}
	_, err := register.PrepareAndRun(context.Background(), &Target{Endpoint: proxy.URL}, plan.Register{}, art, register.Options{}, "")
	if err == nil || !strings.Contains(err.Error(), "os_hash_value (sha512) "+strings.Repeat("0", 128)+" differs from ours "+sums.SHA512) {
		t.Fatalf("got %v, want the SHA-512 mismatch", err)
	}
}
