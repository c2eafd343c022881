// Package glance registers raw (and qcow2/vmdk/ova) images in OpenStack
// Glance with gophercloud v2: create the image record, stream the bytes
// sparsely (holes are sent as zeros but never read from disk), then compare
// Glance's checksum (md5) and os_hash_value (sha512) with ours. Anything
// this run created is deleted on failure or cancellation.
package glance

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/conpaas/cps/clouds/register"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/internal/progress"
	"github.com/conpaas/cps/plan"
)

// EnvEndpoint names the variable that selects noauth mode: Glance is
// reached directly at this URL (e.g. http://127.0.0.1:9292) without
// Keystone. Meant for tests and for Glance deployed with auth_strategy=noauth.
const EnvEndpoint = "CPS_GLANCE_ENDPOINT"

func init() { register.Add(plan.TargetGlance, &Target{}) }

// Target is the glance registration target.
type Target struct {
	// Endpoint, if set, overrides $CPS_GLANCE_ENDPOINT (noauth mode).
	Endpoint string
	// BeforeUpload, if set, is called with the new image id before the data
	// is sent (tests use it to inject failures).
	BeforeUpload func(id string)
	// onRead, if set, sees the running byte count of the upload stream
	// (tests cancel mid-upload with it).
	onRead func(sent int64)
}

// Client returns an image v2 service client for reg: noauth at an explicit
// endpoint, else Keystone v3 from clouds.yaml (reg.Cloud or $OS_CLOUD), else
// from the OS_* environment variables.
func (t *Target) Client(ctx context.Context, reg plan.Register) (*gophercloud.ServiceClient, string, error) {
	ep := t.Endpoint
	if ep == "" {
		ep = os.Getenv(EnvEndpoint)
	}
	if ep != "" {
		return NoAuthClient(ep), "", nil
	}
	var (
		ao  gophercloud.AuthOptions
		eo  gophercloud.EndpointOpts
		err error
		pc  *gophercloud.ProviderClient
	)
	if reg.Cloud != "" || os.Getenv("OS_CLOUD") != "" {
		opts := []clouds.ParseOption{}
		if reg.Cloud != "" {
			opts = append(opts, clouds.WithCloudName(reg.Cloud))
		}
		var tlsCfg *tls.Config
		ao, eo, tlsCfg, err = clouds.Parse(opts...)
		if err != nil {
			return nil, "", fmt.Errorf("read OpenStack credentials from clouds.yaml (cloud %q): %w", reg.Cloud, err)
		}
		ao.AllowReauth = true
		pc, err = config.NewProviderClient(ctx, ao, config.WithTLSConfig(tlsCfg))
	} else {
		ao, err = authOptionsFromEnv()
		if err != nil {
			return nil, "", fmt.Errorf("no OpenStack credentials: set OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME (or use clouds.yaml with a cloud name): %w", err)
		}
		ao.AllowReauth = true
		eo.Region = os.Getenv("OS_REGION_NAME")
		pc, err = openstack.AuthenticatedClient(ctx, ao)
	}
	if err != nil {
		return nil, "", fmt.Errorf("authenticate with Keystone at %s: %w", ao.IdentityEndpoint, err)
	}
	sc, err := openstack.NewImageV2(pc, eo)
	if err != nil {
		return nil, "", fmt.Errorf("find the image service in the Keystone catalog: %w", err)
	}
	return sc, eo.Region, nil
}

// authOptionsFromEnv reads the OS_* variables of an openrc file.
// openstack.AuthOptionsFromEnv knows only OS_DOMAIN_{ID,NAME}, but
// python-openstackclient and the openrc files Horizon hands out name the
// user's and the project's domains apart: OS_USER_DOMAIN_{ID,NAME} and
// OS_PROJECT_DOMAIN_{ID,NAME}. gophercloud ignores those, so such an openrc
// failed: with OS_PROJECT_NAME it asked for OS_PROJECT_ID, with OS_PROJECT_ID
// it sent a user name without a domain. When one of them is set (and no
// application credential is used) the options are built here, as
// openstackclient does; otherwise gophercloud's reading stands unchanged.
func authOptionsFromEnv() (gophercloud.AuthOptions, error) {
	env := os.Getenv
	userDomID, userDomName := env("OS_USER_DOMAIN_ID"), env("OS_USER_DOMAIN_NAME")
	projDomID, projDomName := env("OS_PROJECT_DOMAIN_ID"), env("OS_PROJECT_DOMAIN_NAME")
	if userDomID+userDomName+projDomID+projDomName == "" ||
		env("OS_APPLICATION_CREDENTIAL_ID")+env("OS_APPLICATION_CREDENTIAL_NAME") != "" {
		return openstack.AuthOptionsFromEnv()
	}
	ao := gophercloud.AuthOptions{
		IdentityEndpoint: env("OS_AUTH_URL"),
		UserID:           cmp.Or(env("OS_USER_ID"), env("OS_USERID")),
		Username:         env("OS_USERNAME"),
		Password:         env("OS_PASSWORD"),
		TenantID:         cmp.Or(env("OS_PROJECT_ID"), env("OS_TENANT_ID")),
		TenantName:       cmp.Or(env("OS_PROJECT_NAME"), env("OS_TENANT_NAME")),
	}
	switch {
	case ao.IdentityEndpoint == "":
		return gophercloud.AuthOptions{}, gophercloud.ErrMissingEnvironmentVariable{EnvironmentVariable: "OS_AUTH_URL"}
	case ao.UserID == "" && ao.Username == "":
		return gophercloud.AuthOptions{}, gophercloud.ErrMissingAnyoneOfEnvironmentVariables{EnvironmentVariables: []string{"OS_USER_ID", "OS_USERNAME"}}
	case ao.Password == "":
		return gophercloud.AuthOptions{}, gophercloud.ErrMissingEnvironmentVariable{EnvironmentVariable: "OS_PASSWORD"}
	}
	if ao.UserID == "" { // a user id needs no domain
		ao.DomainID, ao.DomainName = domain(userDomID, userDomName, env("OS_DOMAIN_ID"), env("OS_DOMAIN_NAME"))
		if ao.DomainID+ao.DomainName == "" {
			return gophercloud.AuthOptions{}, gophercloud.ErrMissingAnyoneOfEnvironmentVariables{EnvironmentVariables: []string{"OS_USER_DOMAIN_NAME", "OS_USER_DOMAIN_ID"}}
		}
	}
	switch {
	case env("OS_SYSTEM_SCOPE") == "all":
		ao.Scope = &gophercloud.AuthScope{System: true}
	case ao.TenantID != "":
		ao.Scope = &gophercloud.AuthScope{ProjectID: ao.TenantID}
	case ao.TenantName != "":
		id, name := domain(projDomID, projDomName, env("OS_DOMAIN_ID"), env("OS_DOMAIN_NAME"))
		if id+name == "" {
			return gophercloud.AuthOptions{}, gophercloud.ErrMissingAnyoneOfEnvironmentVariables{EnvironmentVariables: []string{"OS_PROJECT_DOMAIN_NAME", "OS_PROJECT_DOMAIN_ID"}}
		}
		ao.Scope = &gophercloud.AuthScope{ProjectName: ao.TenantName, DomainID: id, DomainName: name}
	}
	return ao, nil
}

// domain picks one of a domain's id and name (Keystone refuses both): the
// specific variables before the OS_DOMAIN_* fallbacks, the id before the name.
func domain(id, name, fallbackID, fallbackName string) (string, string) {
	switch {
	case id != "":
		return id, ""
	case name != "":
		return "", name
	case fallbackID != "":
		return fallbackID, ""
	}
	return "", fallbackName
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

// diskFormat picks Glance's disk_format from the artifact kind when the
// register block does not set one.
func diskFormat(reg plan.Register, art register.Artifact) string {
	if reg.DiskFormat != "" {
		return reg.DiskFormat
	}
	switch {
	case strings.HasSuffix(art.Path, ".qcow2"):
		return "qcow2"
	case strings.HasSuffix(art.Path, ".vmdk"):
		return "vmdk"
	case strings.HasSuffix(art.Path, ".ova"):
		return "vmdk"
	}
	return "raw" // as in the seeds
}

// Properties returns the image properties: defaults derived from the
// artifact, overridden by the register block's properties.
func Properties(reg plan.Register, art register.Artifact) map[string]string {
	p := map[string]string{"os_distro": "debian", "os_type": "linux"}
	if a, ok := archProperty[art.Arch]; ok {
		p["architecture"] = a
	} else if art.Arch != "" {
		p["architecture"] = art.Arch
	}
	if art.Boot.UEFI && !art.Boot.BIOS {
		p["hw_firmware_type"] = "uefi"
	}
	if art.Kind == plan.KindLXC {
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

// ImageName is the Glance name of an artifact.
func ImageName(reg plan.Register, art register.Artifact) string {
	if n := reg.Properties["name"]; n != "" {
		return n
	}
	if art.Version != "" {
		return art.Name + "-" + art.Version
	}
	return art.Name
}

// Register implements register.Target.
func (t *Target) Register(ctx context.Context, reg plan.Register, art register.Artifact, opt register.Options) ([]catalogue.Registration, error) {
	f, err := os.Open(art.Path)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat image: %w", err)
	}
	sc, region, err := t.Client(ctx, reg)
	if err != nil {
		return nil, err
	}
	name := ImageName(reg, art)
	props := Properties(reg, art)
	delete(props, "name")
	rec := func(id string) []catalogue.Registration {
		return []catalogue.Registration{{Cloud: "openstack", Target: plan.TargetGlance, Region: region,
			CloudName: reg.Cloud, ImageID: id, Time: time.Now().UTC()}}
	}

	// Idempotency: an active image with the same name and md5 is reused.
	if art.Sums.MD5 != "" {
		id, err := findExisting(ctx, sc, name, art.Sums.MD5, st.Size())
		if err != nil {
			return nil, err
		}
		if id != "" {
			progress.Logf("glance: image %s (%s) already has these bytes, reusing it", name, id)
			return rec(id), nil
		}
	}

	vis := images.ImageVisibilityPrivate
	if reg.Visibility != "" {
		vis = images.ImageVisibility(reg.Visibility)
	}
	cf := reg.ContainerFormat
	if cf == "" {
		cf = "bare"
		if strings.HasSuffix(art.Path, ".ova") {
			cf = "ova"
		}
	}
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

	// With the artifact's MD5 known (the catalogue's, which `cpsimage
	// register` has just checked against the file), nothing is hashed while
	// sending: Glance's checksum must equal the MD5 of the image as built,
	// a stronger check than against what was read, and on two cores the
	// hashing would take the CPU glance-api needs (scripts/bench/glance.sh).
	var algos []checksum.Algo
	if art.Sums.MD5 == "" {
		algos = []checksum.Algo{checksum.MD5, checksum.SHA512}
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
	return rec(id), nil
}

// Upload streams f sparsely into image id, hashing md5+sha512 on the way.
func Upload(ctx context.Context, sc *gophercloud.ServiceClient, id string, f *os.File, label string) (checksum.Sums, error) {
	return upload(ctx, sc, id, f, label, []checksum.Algo{checksum.MD5, checksum.SHA512}, nil)
}

// upload sends f, hashing it with algos on the way (none: only counted).
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
	var m *checksum.Multi
	if len(algos) > 0 {
		m = checksum.NewMulti(algos...)
	}
	body, wait := hashedStream(r, m)
	err = putData(ctx, sc, id, body, r.Size())
	body.Close() // stops the producer if the transport gave up early
	wait()       // the hashers must be idle before Sum
	bar.Finish()
	sums := checksum.Sums{Size: sent}
	if m != nil {
		sums = m.Sum()
	}
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
		return fmt.Errorf("Glance image %s is %q after the upload, want active", id, img.Status)
	}
	if img.SizeBytes != sums.Size {
		return fmt.Errorf("Glance image %s has %d bytes, we sent %d", id, img.SizeBytes, sums.Size)
	}
	if img.Checksum != "" && img.Checksum != sums.MD5 {
		return fmt.Errorf("Glance image %s checksum (md5) %s differs from ours %s: the upload was corrupted, or the file changed since it was catalogued (check it with cpsimage verify)", id, img.Checksum, sums.MD5)
	}
	algo, _ := img.Properties["os_hash_algo"].(string)
	val, _ := img.Properties["os_hash_value"].(string)
	if algo == "sha512" && sums.SHA512 != "" && val != sums.SHA512 {
		return fmt.Errorf("Glance image %s os_hash_value (sha512) %s differs from ours %s: the upload was corrupted", id, val, sums.SHA512)
	}
	if (img.Checksum == "" || sums.MD5 == "") && (val == "" || sums.SHA512 == "") {
		return fmt.Errorf("Glance image %s reports no checksum we can compare; cannot verify the upload", id)
	}
	return nil
}

func findExisting(ctx context.Context, sc *gophercloud.ServiceClient, name, md5 string, size int64) (string, error) {
	pages, err := images.List(sc, images.ListOpts{Name: name}).AllPages(ctx)
	if err != nil {
		return "", fmt.Errorf("list Glance images named %s: %w", name, err)
	}
	all, err := images.ExtractImages(pages)
	if err != nil {
		return "", fmt.Errorf("list Glance images named %s: %w", name, err)
	}
	for _, im := range all {
		if im.Status == images.ImageStatusActive && im.Checksum == md5 && im.SizeBytes == size {
			return im.ID, nil
		}
	}
	return "", nil
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
