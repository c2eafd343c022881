package glance

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/conpaas/cps/clouds/osauth"
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

	// A token for OS_AUTH_TYPE=token, as `openstack token issue` gives.
	token := issueToken(t, ks.URL, "cps", "s3cret")
	tokenEnv := func(tok string) map[string]string {
		return map[string]string{"OS_AUTH_URL": ks.URL, "OS_AUTH_TYPE": "v3token", "OS_TOKEN": tok,
			"OS_PROJECT_NAME": "conpaas", "OS_PROJECT_DOMAIN_NAME": "Default", "OS_REGION_NAME": "RegionOne"}
	}
	with := func(env map[string]string, k, v string) map[string]string {
		e := maps.Clone(env)
		e[k] = v
		return e
	}

	ok := []struct {
		name  string
		env   map[string]string
		cloud string
	}{
		{"os-env", osEnv(ks.URL, "s3cret"), ""},
		{"clouds-yaml", map[string]string{"OS_CLIENT_CONFIG_FILE": cloudsYAML}, "fake"},
		{"os-token", tokenEnv(token), ""},
	}
	for _, c := range ok {
		t.Run(c.name, func(t *testing.T) {
			setenv(t, c.env)
			issued, authorized, rejected := ks.Issued.Load(), ks.Authorized.Load(), ks.Rejected.Load()
			seen := len(ks.Requests())
			tg := &Target{OpenStack: osauth.FromEnv}
			reg := plan.Register{Name: "os", Target: plan.TargetGlance, Image: "conpaas", Cloud: c.cloud}
			art := register.Artifact{Path: img, Name: "ks-" + c.name, Version: "1.0", Kind: plan.KindRaw, Arch: "amd64"}
			cat := filepath.Join(t.TempDir(), "catalogue.json")

			regs, err := register.PrepareAndRun(ctx, tg, reg, art, register.Options{}, cat)
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

	// Each failure names the setting to fix, in one line.
	bad := []struct {
		name  string
		env   map[string]string
		cloud string
		want  []string
	}{
		{"os-env-wrong-password", osEnv(ks.URL, "wrong"), "",
			[]string{"user cps refused by Keystone at " + ks.URL, "the password is wrong", "check OS_PASSWORD, OS_USERNAME and OS_USER_DOMAIN_NAME"}},
		{"os-env-wrong-user", with(osEnv(ks.URL, "s3cret"), "OS_USERNAME", "nobody"), "",
			[]string{"user nobody refused by Keystone at " + ks.URL, "no such user"}},
		{"os-env-wrong-project", with(osEnv(ks.URL, "s3cret"), "OS_PROJECT_NAME", "nope"), "",
			[]string{"project nope refused by Keystone at " + ks.URL + ", which accepts the password of user cps", "check OS_PROJECT_NAME"}},
		{"clouds-yaml-wrong-password", map[string]string{"OS_CLIENT_CONFIG_FILE": cloudsYAML}, "badpassword",
			[]string{"user cps refused by Keystone at " + ks.URL, `check password, username and user_domain_name of cloud "badpassword" in clouds.yaml`}},
		{"os-env-wrong-region", with(osEnv(ks.URL, "s3cret"), "OS_REGION_NAME", "RegionTwo"), "",
			[]string{`no image service in region "RegionTwo"; it has one in RegionOne`, "check OS_REGION_NAME"}},
		{"os-token-invalid", tokenEnv("gAAAAAbogus"), "",
			[]string{"the token (OS_TOKEN) is unknown to Keystone at " + ks.URL, "expired or was revoked"}},
		{"os-token-wrong-project", with(tokenEnv(token), "OS_PROJECT_NAME", "nope"), "",
			[]string{"project nope refused by Keystone at " + ks.URL + ", which accepts the token"}},
		{"os-env-unreachable", osEnv(dead, "s3cret"), "",
			[]string{"cannot reach Keystone at " + dead, "connection refused", "check OS_AUTH_URL"}},
		{"clouds-yaml-unreachable", map[string]string{"OS_CLIENT_CONFIG_FILE": cloudsYAML}, "unreachable",
			[]string{"cannot reach Keystone at " + dead, `check auth_url of cloud "unreachable" in clouds.yaml`}},
		{"clouds-yaml-unknown-cloud", map[string]string{"OS_CLIENT_CONFIG_FILE": cloudsYAML}, "nope",
			[]string{`read OpenStack credentials from clouds.yaml (cloud "nope")`, `cloud "nope" not found`}},
		{"no-credentials", nil, "", []string{"no OpenStack credentials", "OS_AUTH_URL"}},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			setenv(t, c.env)
			authorized, rejected := ks.Authorized.Load(), ks.Rejected.Load()
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			art := register.Artifact{Path: img, Name: "ks-" + c.name, Version: "1.0", Kind: plan.KindRaw}
			_, err := register.PrepareAndRun(cctx, &Target{OpenStack: osauth.FromEnv}, plan.Register{Name: "os", Target: plan.TargetGlance, Cloud: c.cloud}, art, register.Options{}, "")
			if err == nil {
				t.Fatal("registration succeeded, want an error")
			}
			t.Log(err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "Expected HTTP response code") {
				t.Errorf("error %q is not one plain line", err)
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

// issueToken gets a project-scoped token from Keystone with a password.
func issueToken(t *testing.T, authURL, user, password string) string {
	t.Helper()
	body := fmt.Sprintf(`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":%q,"domain":{"name":"Default"},"password":%q}}},`+
		`"scope":{"project":{"name":"conpaas","domain":{"name":"Default"}}}}}`, user, password)
	resp, err := http.Post(authURL+"/auth/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("token request: %s", resp.Status)
	}
	return resp.Header.Get("X-Subject-Token")
}
