// Package glance registers raw (and qcow2/vmdk/ova) images in OpenStack
// Glance with gophercloud v2: create the image record, stream the bytes
// sparsely (holes are sent as zeros but never read from disk), then compare
// Glance's checksum (md5) and os_hash_value (sha512) with ours. Anything
// this run created is deleted on failure or cancellation.
package glance

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/conpaas/cps/clouds/osauth"
	"github.com/conpaas/cps/clouds/register"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/internal/progress"
	"github.com/conpaas/cps/internal/readahead"
	"github.com/conpaas/cps/plan"
)

// EnvEndpoint names the variable that selects noauth mode: Glance is
// reached directly at this URL (e.g. http://127.0.0.1:9292) without
// Keystone. Meant for tests and for Glance deployed with auth_strategy=noauth.
const EnvEndpoint = "CPS_GLANCE_ENDPOINT"

func init() {
	register.Add(plan.TargetGlance, func(env register.Env) register.Target {
		return &Target{Endpoint: env.GlanceEndpoint, OpenStack: env.OpenStack}
	})
}

// Target is the glance registration target.
type Target struct {
	// Endpoint, if set, is a Glance reached without Keystone (noauth).
	Endpoint string
	// OpenStack returns the authentication for a clouds.yaml entry (""
	// for the OS_* variables): osauth.FromEnv in cpsimage.
	OpenStack func(cloud string) (osauth.Config, error)
	// BeforeUpload, if set, is called with the new image id before the data
	// is sent (tests use it to inject failures).
	BeforeUpload func(id string)
	// onRead, if set, sees the running byte count of the upload stream
	// (tests cancel mid-upload with it).
	onRead func(sent int64)

	set    Settings
	sc     *gophercloud.ServiceClient // after Check
	region string
}

// Settings is a glance register block.
type Settings struct {
	// Cloud is the clouds.yaml entry ("": $OS_CLOUD, else the OS_* variables).
	Cloud string
	// DiskFormat and ContainerFormat, if set, must agree with the
	// artifact's format; Visibility defaults to private.
	DiskFormat, ContainerFormat, Visibility string
	// Properties override the derived ones ("name" names the image).
	Properties map[string]string
}

// Accepts implements register.Target: disk images in the formats Glance
// stores (raw, qcow2, VMDK, an OVA), and LXC filesystems (for Nova's LXC
// driver); not SD-card images, which only a Raspberry Pi boots.
func (t *Target) Accepts(art register.Artifact) error {
	return register.Accept(plan.TargetGlance, art, []catalogue.Kind{catalogue.KindRaw, catalogue.KindLXC, catalogue.KindOVA},
		[]catalogue.Format{catalogue.FormatRaw, catalogue.FormatQCOW2, catalogue.FormatVMDK, catalogue.FormatOVA},
		"an SD card boots only on a Raspberry Pi: flash it (cpsimage flash), or register the raw image of the same services")
}

// Settings implements register.Target.
func (t *Target) Settings() []string {
	// No region: the cloud's (OS_REGION_NAME, region_name) is the one,
	// so -region, which is EC2's, never lands in a glance block.
	return []string{"cloud", "disk_format", "container_format", "visibility", "properties"}
}

// Prepare implements register.Target.
func (t *Target) Prepare(reg plan.Register) error {
	if err := register.Foreign(reg, t.Settings()...); err != nil {
		return err
	}
	t.set = Settings{Cloud: reg.Cloud, DiskFormat: reg.DiskFormat, ContainerFormat: reg.ContainerFormat, Visibility: reg.Visibility, Properties: reg.Properties}
	switch t.set.Visibility {
	case "", "private", "public", "shared", "community":
		return nil
	}
	return fmt.Errorf("visibility %q: use private, shared, community or public", t.set.Visibility)
}

// Check implements register.Target: authenticates (or reaches a noauth
// Glance) and finds the image service, before the file is hashed.
func (t *Target) Check(ctx context.Context) error {
	var err error
	t.sc, t.region, err = t.client(ctx, t.set.Cloud, "")
	return err
}

// Client returns an image v2 service client: noauth at Endpoint, else
// through Keystone (clouds/osauth: clouds.yaml entry cloud, else the OS_*
// variables, as OpenStack returns them), and the region.
func (t *Target) Client(ctx context.Context, cloud string) (*gophercloud.ServiceClient, string, error) {
	return t.client(ctx, cloud, "")
}

func (t *Target) client(ctx context.Context, cloud, region string) (*gophercloud.ServiceClient, string, error) {
	if t.Endpoint != "" {
		// No Keystone to prove the way: ask Glance's version document
		// (any answer will do) so an unreachable endpoint is found here.
		// Bounded as osauth bounds Keystone: a silent endpoint hung here.
		cctx, cancel := context.WithTimeout(ctx, osauth.AuthTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(cctx, http.MethodGet, t.Endpoint, nil)
		if err != nil {
			return nil, "", fmt.Errorf("the Glance endpoint %q: %w; check CPS_GLANCE_ENDPOINT", t.Endpoint, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil && ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
			return nil, "", fmt.Errorf("no answer from Glance at %s within %v; check CPS_GLANCE_ENDPOINT, and that Glance is up and reachable from here", t.Endpoint, osauth.AuthTimeout)
		}
		if err != nil {
			return nil, "", fmt.Errorf("cannot reach Glance at %s (%v); check CPS_GLANCE_ENDPOINT", t.Endpoint, errors.Unwrap(err))
		}
		resp.Body.Close()
		return NoAuthClient(t.Endpoint), "", nil
	}
	if t.OpenStack == nil {
		return nil, "", errors.New("no OpenStack access configured")
	}
	cfg, err := t.OpenStack(cloud)
	if err != nil {
		return nil, "", err
	}
	if region != "" {
		cfg.Endpoints.Region = region
	}
	pc, err := cfg.Authenticate(ctx)
	if err != nil {
		return nil, "", err
	}
	sc, err := cfg.Service(pc, "image", openstack.NewImageV2)
	if err != nil {
		return nil, "", err
	}
	return sc, cfg.Endpoints.Region, nil
}

// NoAuthClient talks to a Glance running with auth_strategy = noauth.
func NoAuthClient(endpoint string) *gophercloud.ServiceClient {
	ep := strings.TrimSuffix(endpoint, "/") + "/"
	pc := &gophercloud.ProviderClient{}
	pc.UseTokenLock()
	return &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: ep, ResourceBase: ep + "v2/", Type: "image"}
}

// archProperty maps Debian architecture names to the ones Nova understands.
var archProperty = map[string]string{"amd64": "x86_64", "arm64": "aarch64", "armhf": "armv7l", "i386": "i686"}

// diskFormat is Glance's disk_format: the artifact's recorded format (the
// file's real layout, which Glance must be told), else what its name says
// (catalogues from before the format was recorded), else the register
// block's disk_format, else raw as in the seeds.
func diskFormat(reg Settings, art register.Artifact) string {
	f := art.Format
	if f == "" {
		switch {
		case strings.HasSuffix(art.Path, ".qcow2"):
			f = catalogue.FormatQCOW2
		case strings.HasSuffix(art.Path, ".vmdk"):
			f = catalogue.FormatVMDK
		case strings.HasSuffix(art.Path, ".ova"):
			f = catalogue.FormatOVA
		}
	}
	switch f {
	case catalogue.FormatQCOW2:
		return "qcow2"
	case catalogue.FormatVMDK, catalogue.FormatOVA:
		return "vmdk"
	}
	if reg.DiskFormat != "" {
		return reg.DiskFormat
	}
	return "raw"
}

// containerFormat is Glance's container_format: ova for an appliance,
// else the block's, else bare (as in the seeds).
func containerFormat(reg Settings, art register.Artifact) string {
	if art.Format == catalogue.FormatOVA || (art.Format == "" && strings.HasSuffix(art.Path, ".ova")) {
		return "ova"
	}
	return cmp.Or(reg.ContainerFormat, "bare")
}

// checkFormats refuses a block whose disk_format or container_format
// contradicts the artifact: Glance would store the bytes under a format
// they are not in, and Nova would fail to boot them.
func checkFormats(reg Settings, art register.Artifact) error {
	if reg.DiskFormat != "" && reg.DiskFormat != diskFormat(Settings{}, art) && art.FileFormat() != catalogue.FormatRaw {
		return fmt.Errorf("the register block says disk_format %q but %s is a %s file: remove disk_format, the artifact's format is used", reg.DiskFormat, art.Path, art.FileFormat())
	}
	if reg.ContainerFormat != "" && reg.ContainerFormat != containerFormat(Settings{}, art) && art.FileFormat() == catalogue.FormatOVA {
		return fmt.Errorf("the register block says container_format %q but %s is an OVA: remove container_format", reg.ContainerFormat, art.Path)
	}
	return nil
}

// Properties returns the image properties: defaults derived from the
// artifact, overridden by the register block's properties.
func Properties(reg Settings, art register.Artifact) map[string]string {
	p := map[string]string{"os_distro": "debian", "os_type": "linux"}
	if a, ok := archProperty[string(art.Arch)]; ok {
		p["architecture"] = a
	} else if art.Arch != "" {
		p["architecture"] = string(art.Arch)
	}
	if art.Boot.Has(catalogue.BootUEFI) && !art.Boot.Has(catalogue.BootBIOS) {
		p["hw_firmware_type"] = "uefi"
	}
	if art.Kind == catalogue.KindLXC {
		// A filesystem, not a disk: Nova's ImagePropertiesFilter then
		// schedules it on LXC compute nodes only.
		p["hypervisor_type"] = "lxc"
	}
	if art.Version != "" {
		p["conpaas_version"] = art.Version
	}
	for k, v := range reg.Properties {
		p[k] = v
	}
	return p
}

// ImageName is the Glance name of an artifact: NAME-VERSION, with the
// disk format appended for any but raw (NAME-VERSION-vmdk), so a raw and a
// VMDK of one image can both be registered under names that say which is
// which (raw, what the seeds register, keeps the plain name).
func ImageName(reg Settings, art register.Artifact) string {
	if n := reg.Properties["name"]; n != "" {
		return n
	}
	name := art.Name
	if art.Version != "" {
		name += "-" + art.Version
	}
	if f := diskFormat(reg, art); f != "raw" {
		name += "-" + f
	}
	return name
}

// Register implements register.Target.
func (t *Target) Register(ctx context.Context, art register.Artifact, opt register.Options) ([]catalogue.Registration, error) {
	reg, sc, region := t.set, t.sc, t.region
	if err := checkFormats(reg, art); err != nil {
		return nil, err
	}
	f, err := os.Open(art.Path)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat image: %w", err)
	}
	name := ImageName(reg, art)
	props := Properties(reg, art)
	delete(props, "name")
	if art.Sums.MD5 != "" {
		// Marks the image as this artifact's while Glance has no checksum
		// yet (queued, saving), so a later run can tell its leftovers.
		props["conpaas_md5"] = art.Sums.MD5
	}
	rec := func(id string) []catalogue.Registration {
		return []catalogue.Registration{{Cloud: catalogue.CloudOpenStack, Target: plan.TargetGlance, Region: region,
			CloudName: reg.Cloud, ImageID: id, Time: time.Now().UTC()}}
	}

	// Look the name up before anything is uploaded.
	found, err := lookup(ctx, sc, name, art.Sums.MD5, st.Size())
	if err != nil {
		return nil, err
	}
	if found.same != "" {
		progress.Logf("glance: image %s (%s) already has these bytes, reusing it", name, found.same)
		return rec(found.same), nil
	}
	for _, id := range found.stale {
		if err := images.Delete(ctx, sc, id).ExtractErr(); err != nil && !gophercloud.ResponseCodeIs(err, 404) {
			return nil, fmt.Errorf("delete the stale image %s (%s, left by an earlier failed run): %w", id, name, err)
		}
		progress.Logf("glance: deleted image %s (%s), left unfinished by an earlier run of these bytes", id, name)
	}
	if len(found.others) > 0 {
		switch {
		case opt.ForceNewName:
			name += "-" + time.Now().UTC().Format("20060102T150405Z")
		case !opt.Replace:
			return nil, fmt.Errorf("an image named %s with other bytes is in Glance already (%s); nothing was uploaded. "+
				"-replace deletes it once the new image is active, -force-new-name registers this one under a new name beside it",
				name, strings.Join(found.others, ", "))
		}
	}

	vis := images.ImageVisibilityPrivate
	if reg.Visibility != "" {
		vis = images.ImageVisibility(reg.Visibility)
	}
	cf := containerFormat(reg, art)
	img, err := images.Create(ctx, sc, images.CreateOpts{Name: name, Visibility: &vis,
		DiskFormat: diskFormat(reg, art), ContainerFormat: cf, Properties: props}).Extract()
	if err != nil {
		return nil, fmt.Errorf("create Glance image %s: %w", name, err)
	}
	id := img.ID
	ok := false
	defer func() {
		if ok || opt.KeepOnError {
			return
		}
		// The caller's ctx may be cancelled already: clean up on our own clock.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if derr := images.Delete(dctx, sc, id).ExtractErr(); derr != nil && !gophercloud.ResponseCodeIs(derr, 404) {
			progress.Logf("glance: could not delete half-created image %s: %v", id, derr)
		}
	}()
	if t.BeforeUpload != nil {
		t.BeforeUpload(id)
	}

	// SHA-512 is computed while sending (on the read-ahead side, so it
	// overlaps the upload) and compared with Glance's os_hash_value; MD5
	// too when the catalogue has none. A known MD5 is the catalogue's,
	// which `cpsimage register` has just checked against the file, so
	// Glance's checksum is compared with the image as built.
	algos := []checksum.Algo{checksum.SHA512}
	if art.Sums.MD5 == "" {
		algos = append(algos, checksum.MD5)
	}
	sums, err := upload(ctx, sc, id, f, name, algos, t.onRead)
	if err != nil {
		return nil, err
	}
	if art.Sums.MD5 != "" {
		sums.MD5 = art.Sums.MD5
	}
	if err := Verify(ctx, sc, id, sums); err != nil {
		return nil, err
	}
	ok = true
	if opt.Replace {
		for _, old := range found.others {
			if err := images.Delete(ctx, sc, old).ExtractErr(); err != nil && !gophercloud.ResponseCodeIs(err, 404) {
				progress.Logf("glance: -replace: could not delete the old image %s: %v", old, err)
				continue
			}
			progress.Logf("glance: -replace: deleted the old image %s (%s)", old, name)
		}
	}
	return rec(id), nil
}

// upload sends f, hashing it with algos on the read-ahead side.
func upload(ctx context.Context, sc *gophercloud.ServiceClient, id string, f *os.File, label string, algos []checksum.Algo, hook func(int64)) (checksum.Sums, error) {
	r, err := sparse.NewReader(ctx, f)
	if err != nil {
		return checksum.Sums{}, err
	}
	bar := progress.New("glance "+label, r.Size())
	var sent int64
	r.OnRead = func(n int64) {
		bar.Add64(n)
		sent += n
		if hook != nil {
			hook(sent)
		}
	}
	m := checksum.NewMulti(algos...)
	read := readahead.Stream(r)
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// 4 MiB chunks, 3 ahead: reading and hashing the next chunks
		// overlaps sending this one (scripts/bench/glance.sh).
		err := readahead.Run(ctx, 4<<20, 3, func(b []byte) (readahead.Chunk, error) {
			c, err := read(b)
			if err == nil {
				m.Write(c.B)
			}
			return c, err
		}, func(c readahead.Chunk) error {
			_, err := pw.Write(c.B)
			return err
		})
		pw.CloseWithError(err) // nil: EOF
	}()
	err = putData(ctx, sc, id, pr, r.Size())
	pr.Close() // stops the reading side if the transport gave up early
	<-done     // the hashers must be idle before Sum
	bar.Finish()
	sums := m.Sum()
	if err != nil {
		if ctx.Err() != nil {
			err = errors.Join(ctx.Err(), err)
		}
		return sums, fmt.Errorf("upload image data to Glance image %s: %w", id, err)
	}
	if sums.Size != r.Size() {
		return sums, fmt.Errorf("upload to Glance image %s sent %d of %d bytes", id, sums.Size, r.Size())
	}
	return sums, nil
}

// Verify checks that Glance stored exactly the bytes we sent.
func Verify(ctx context.Context, sc *gophercloud.ServiceClient, id string, sums checksum.Sums) error {
	img, err := images.Get(ctx, sc, id).Extract()
	if err != nil {
		return fmt.Errorf("read back Glance image %s: %w", id, err)
	}
	if img.Status != images.ImageStatusActive {
		return fmt.Errorf("image %s in Glance is %q after the upload, want active", id, img.Status)
	}
	if img.SizeBytes != sums.Size {
		return fmt.Errorf("image %s in Glance has %d bytes, we sent %d", id, img.SizeBytes, sums.Size)
	}
	if img.Checksum != "" && img.Checksum != sums.MD5 {
		return fmt.Errorf("image %s in Glance: its checksum (md5) %s differs from ours %s: the upload was corrupted, or the file changed since it was catalogued (check it with cpsimage verify)", id, img.Checksum, sums.MD5)
	}
	algo, _ := img.Properties["os_hash_algo"].(string)
	val, _ := img.Properties["os_hash_value"].(string)
	if algo == "sha512" && sums.SHA512 != "" && val != sums.SHA512 {
		return fmt.Errorf("image %s in Glance: its os_hash_value (sha512) %s differs from ours %s: the upload was corrupted", id, val, sums.SHA512)
	}
	if (img.Checksum == "" || sums.MD5 == "") && (val == "" || sums.SHA512 == "") {
		return fmt.Errorf("image %s in Glance reports no checksum we can compare; cannot verify the upload", id)
	}
	return nil
}

// found is what lookup found under a name.
type found struct {
	same   string   // an active image with these bytes
	stale  []string // unfinished images of these bytes (queued, saving, killed) left by a failed run
	others []string // active images with other bytes
}

// lookup lists the images named name: one with these bytes is reused; the
// unfinished ones marked with this artifact's MD5 (conpaas_md5) are an
// earlier run's leftovers, for instance when glance-api died mid-upload
// and left its image "saving"; others are a clash. Foreign images that are
// not active are left alone.
func lookup(ctx context.Context, sc *gophercloud.ServiceClient, name, md5 string, size int64) (found, error) {
	var f found
	pages, err := images.List(sc, images.ListOpts{Name: name}).AllPages(ctx)
	if err != nil {
		return f, fmt.Errorf("list Glance images named %s: %w", name, err)
	}
	all, err := images.ExtractImages(pages)
	if err != nil {
		return f, fmt.Errorf("list Glance images named %s: %w", name, err)
	}
	for _, im := range all {
		mine := md5 != "" && im.Properties["conpaas_md5"] == md5
		switch im.Status {
		case images.ImageStatusActive:
			if md5 != "" && im.Checksum == md5 && im.SizeBytes == size {
				f.same = im.ID
			} else {
				f.others = append(f.others, im.ID)
			}
		case images.ImageStatusQueued, images.ImageStatusSaving, images.ImageStatusKilled, images.ImageStatusImporting:
			if mine {
				f.stale = append(f.stale, im.ID)
			}
		}
	}
	if f.same != "" {
		f.others = nil
	}
	return f, nil
}

// putData is imagedata.Upload with a Content-Length. gophercloud sends a
// plain io.Reader chunked, and glance-api (eventlet) de-chunks in Python:
// that cost ~35% of the throughput in scripts/bench/glance.sh. With the size
// known up front glance-api reads the body directly, as it does for curl -T.
func putData(ctx context.Context, sc *gophercloud.ServiceClient, id string, body io.Reader, size int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, sc.ServiceURL("images", id, "file"), body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if tok := sc.Token(); tok != "" {
		req.Header.Set("X-Auth-Token", tok)
	}
	resp, err := sc.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return fmt.Errorf("PUT %s: %s: %s", req.URL.Path, resp.Status, strings.TrimSpace(string(msg)))
}
