package glance

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/conpaas/cps/clouds/register"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/plan"
	"github.com/conpaas/cps/test/glanceserver"
	"github.com/conpaas/cps/test/keystonefake"
)

// clearOpenStackEnv unsets every variable Target.Client or gophercloud
// reads (restored when the test ends), so the developer's own cloud
// credentials cannot leak into the test, and noauth mode is off.
func clearOpenStackEnv(t *testing.T) {
	t.Helper()
	names := []string{EnvEndpoint, "OS_CLOUD", "OS_CLIENT_CONFIG_FILE", "OS_REGION_NAME", "OS_INTERFACE"}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "OS_") {
			names = append(names, k)
		}
	}
	for _, k := range names {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

func setenv(t *testing.T, env map[string]string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestKeystoneGlance registers through the Keystone path of Target.Client
// (Endpoint and $CPS_GLANCE_ENDPOINT empty): password token from the
// Keystone v3 fake, image endpoint from its catalog, every Glance call
// (including the custom putData upload) through the token-checking proxy in
// front of Debian's glance-api.
func TestKeystoneGlance(t *testing.T) {
	srv := glanceserver.Start(t)
	ks := keystonefake.Start(t, srv.URL, "cps", "s3cret", "conpaas")
	clearOpenStackEnv(t)
	const mib = 1 << 20
	img, sums := sparseImage(t, 8*mib, 0, 5*mib)
	dead := "http://" + closedPort(t) + "/v3"

	cloudsYAML := filepath.Join(t.TempDir(), "clouds.yaml")
	yaml := fmt.Sprintf(`clouds:
  fake:
    # Unversioned auth URL: gophercloud discovers v3 with GET /.
    auth:
      auth_url: %[1]s
      username: cps
      password: s3cret
      user_domain_name: Default
      project_id: %[2]s
    region_name: RegionOne
    interface: public
    identity_api_version: 3
  badpassword:
    auth:
      auth_url: %[3]s
      username: cps
      password: wrong
      user_domain_name: Default
      project_name: conpaas
      project_domain_name: Default
  unreachable:
    auth:
      auth_url: %[4]s
      username: cps
      password: s3cret
      user_domain_name: Default
      project_name: conpaas
      project_domain_name: Default
`, ks.BaseURL, ks.ProjectID, ks.URL, dead)
	if err := os.WriteFile(cloudsYAML, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	osEnv := func(authURL, password string) map[string]string {
		return map[string]string{"OS_AUTH_URL": authURL, "OS_USERNAME": "cps", "OS_PASSWORD": password,
			"OS_PROJECT_NAME": "conpaas", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
			"OS_REGION_NAME": "RegionOne"}
	}
	ctx := context.Background()
	noauth := NoAuthClient(srv.URL) // to look at Glance behind the proxy's back

	ok := []struct {
		name  string
		env   map[string]string
		cloud string
	}{
		{"os-env", osEnv(ks.URL, "s3cret"), ""},
		{"clouds-yaml", map[string]string{"OS_CLIENT_CONFIG_FILE": cloudsYAML}, "fake"},
	}
	for _, c := range ok {
		t.Run(c.name, func(t *testing.T) {
			setenv(t, c.env)
			issued, authorized, rejected := ks.Issued.Load(), ks.Authorized.Load(), ks.Rejected.Load()
			seen := len(ks.Requests())
			tg := &Target{}
			name := "glance-keystone-" + c.name
			register.Add(name, tg)
			reg := plan.Register{Name: "os", Target: name, Image: "conpaas", Cloud: c.cloud}
			art := register.Artifact{Path: img, Name: "ks-" + c.name, Version: "1.0", Kind: plan.KindRaw, Arch: "amd64"}
			cat := filepath.Join(t.TempDir(), "catalogue.json")

			regs, err := register.Run(ctx, reg, art, register.Options{}, cat)
			if err != nil {
				t.Fatal(err)
			}
			if len(regs) != 1 || regs[0].ImageID == "" || regs[0].Region != keystonefake.Region || regs[0].CloudName != c.cloud {
				t.Fatalf("registrations = %+v", regs)
			}
			id := regs[0].ImageID

			im, err := images.Get(ctx, noauth, id).Extract()
			if err != nil {
				t.Fatal(err)
			}
			if im.Status != images.ImageStatusActive || im.Name != "ks-"+c.name+"-1.0" || im.SizeBytes != 8*mib ||
				im.Checksum != sums.MD5 || im.Properties["os_hash_value"] != sums.SHA512 {
				t.Errorf("Glance image = status %q name %q size %d md5 %s sha512 %v; want active, %d, %s, %s",
					im.Status, im.Name, im.SizeBytes, im.Checksum, im.Properties["os_hash_value"], 8*mib, sums.MD5, sums.SHA512)
			}
			if cl, err := catalogue.Load(cat); err != nil || cl.Find(art.Name) == nil || cl.Find(art.Name).Registered[0].ImageID != id {
				t.Errorf("catalogue: %v", err)
			}

			if n := ks.Issued.Load() - issued; n != 1 {
				t.Errorf("Keystone issued %d tokens, want 1", n)
			}
			if n := ks.Rejected.Load() - rejected; n != 0 {
				t.Errorf("the proxy rejected %d requests, want 0", n)
			}
			reqs := ks.Requests()[seen:]
			if int64(len(reqs)) != ks.Authorized.Load()-authorized {
				t.Errorf("requests %v vs authorized count %d", reqs, ks.Authorized.Load()-authorized)
			}
			for _, want := range []string{"POST /v2/images", "PUT /v2/images/" + id + "/file", "GET /v2/images/" + id} {
				if !slices.Contains(reqs, want) {
					t.Errorf("the proxy did not authorize %q; it saw %v", want, reqs)
				}
			}
		})
	}

	bad := []struct {
		name  string
		env   map[string]string
		cloud string
		want  []string
		code  int // HTTP status inside the error, if any
	}{
		{"os-env-wrong-password", osEnv(ks.URL, "wrong"), "",
			[]string{"authenticate with Keystone at " + ks.URL, "The request you have made requires authentication."}, 401},
		{"clouds-yaml-wrong-password", map[string]string{"OS_CLIENT_CONFIG_FILE": cloudsYAML}, "badpassword",
			[]string{"authenticate with Keystone at " + ks.URL, "The request you have made requires authentication."}, 401},
		{"os-env-unreachable", osEnv(dead, "s3cret"), "",
			[]string{"authenticate with Keystone at " + dead, "connection refused"}, 0},
		{"clouds-yaml-unreachable", map[string]string{"OS_CLIENT_CONFIG_FILE": cloudsYAML}, "unreachable",
			[]string{"authenticate with Keystone at " + dead, "connection refused"}, 0},
		{"clouds-yaml-unknown-cloud", map[string]string{"OS_CLIENT_CONFIG_FILE": cloudsYAML}, "nope",
			[]string{`read OpenStack credentials from clouds.yaml (cloud "nope")`, `cloud "nope" not found`}, 0},
		{"no-credentials", nil, "", []string{"no OpenStack credentials", "OS_AUTH_URL"}, 0},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			setenv(t, c.env)
			authorized, rejected := ks.Authorized.Load(), ks.Rejected.Load()
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			art := register.Artifact{Path: img, Name: "ks-" + c.name, Version: "1.0", Kind: plan.KindRaw}
			_, err := (&Target{}).Register(cctx, plan.Register{Name: "os", Target: plan.TargetGlance, Cloud: c.cloud}, art, register.Options{})
			if err == nil {
				t.Fatal("registration succeeded, want an error")
			}
			t.Log(err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if c.code != 0 && !gophercloud.ResponseCodeIs(err, c.code) {
				t.Errorf("error %v does not carry HTTP %d", err, c.code)
			}
			if ks.Authorized.Load() != authorized || ks.Rejected.Load() != rejected {
				t.Errorf("Glance was called without a token (authorized %d -> %d, rejected %d -> %d)",
					authorized, ks.Authorized.Load(), rejected, ks.Rejected.Load())
			}
			if ids := listIDs(t, &Target{Endpoint: srv.URL}, art.Name+"-1.0"); len(ids) != 0 {
				t.Errorf("images created despite the failure: %v", ids)
			}
		})
	}
}

// TestAuthOptionsFromEnv covers the openrc variables gophercloud's
// AuthOptionsFromEnv does not read (OS_USER_DOMAIN_*, OS_PROJECT_DOMAIN_*).
func TestAuthOptionsFromEnv(t *testing.T) {
	base := map[string]string{"OS_AUTH_URL": "http://keystone:5000/v3", "OS_USERNAME": "cps", "OS_PASSWORD": "pw"}
	cases := []struct {
		name    string
		env     map[string]string
		want    gophercloud.AuthOptions
		wantErr string
	}{
		{"horizon-openrc-names", map[string]string{"OS_PROJECT_NAME": "conpaas", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default"},
			gophercloud.AuthOptions{DomainName: "Default", TenantName: "conpaas", Scope: &gophercloud.AuthScope{ProjectName: "conpaas", DomainName: "Default"}}, ""},
		{"horizon-openrc-project-id", map[string]string{"OS_PROJECT_ID": "p1", "OS_PROJECT_NAME": "conpaas", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_ID": "default"},
			gophercloud.AuthOptions{DomainName: "Default", TenantID: "p1", TenantName: "conpaas", Scope: &gophercloud.AuthScope{ProjectID: "p1"}}, ""},
		{"ids-win-specific-first", map[string]string{"OS_PROJECT_NAME": "conpaas", "OS_USER_DOMAIN_ID": "u", "OS_USER_DOMAIN_NAME": "U",
			"OS_PROJECT_DOMAIN_NAME": "P", "OS_DOMAIN_ID": "d"},
			gophercloud.AuthOptions{DomainID: "u", TenantName: "conpaas", Scope: &gophercloud.AuthScope{ProjectName: "conpaas", DomainName: "P"}}, ""},
		{"project-domain-from-os-domain", map[string]string{"OS_PROJECT_NAME": "conpaas", "OS_USER_DOMAIN_NAME": "Default", "OS_DOMAIN_NAME": "D"},
			gophercloud.AuthOptions{DomainName: "Default", TenantName: "conpaas", Scope: &gophercloud.AuthScope{ProjectName: "conpaas", DomainName: "D"}}, ""},
		{"user-id-needs-no-domain", map[string]string{"OS_USERNAME": "", "OS_USER_ID": "u1", "OS_PROJECT_ID": "p1", "OS_PROJECT_DOMAIN_ID": "default"},
			gophercloud.AuthOptions{UserID: "u1", TenantID: "p1", Scope: &gophercloud.AuthScope{ProjectID: "p1"}}, ""},
		{"gophercloud-style-unchanged", map[string]string{"OS_PROJECT_NAME": "conpaas", "OS_DOMAIN_NAME": "Default"},
			gophercloud.AuthOptions{DomainName: "Default", TenantName: "conpaas"}, ""},
		{"no-project-domain", map[string]string{"OS_PROJECT_NAME": "conpaas", "OS_USER_DOMAIN_NAME": "Default"}, gophercloud.AuthOptions{}, "OS_PROJECT_DOMAIN_NAME"},
		{"no-user-domain", map[string]string{"OS_PROJECT_ID": "p1", "OS_PROJECT_DOMAIN_ID": "default"}, gophercloud.AuthOptions{}, "OS_USER_DOMAIN_NAME"},
		{"no-password", map[string]string{"OS_PASSWORD": "", "OS_USER_DOMAIN_NAME": "Default"}, gophercloud.AuthOptions{}, "OS_PASSWORD"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clearOpenStackEnv(t)
			setenv(t, base)
			setenv(t, c.env)
			got, err := authOptionsFromEnv()
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one naming %s", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := c.want
			want.IdentityEndpoint, want.Username, want.Password = base["OS_AUTH_URL"], base["OS_USERNAME"], base["OS_PASSWORD"]
			if u, ok := c.env["OS_USERNAME"]; ok {
				want.Username = u
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("auth options\n got %+v scope %+v\nwant %+v scope %+v", got, got.Scope, want, want.Scope)
			}
		})
	}
}
