// Package imagesel decides which image each configured cloud starts: the
// fixed IMAGE_ID, or the catalogue registration matching the cloud's driver,
// region / clouds.yaml name and architecture.
package imagesel

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
	"github.com/conpaas/cps/images/catalogue"
)

// Choice is the image a cloud will start.
type Choice struct {
	Cloud   string `json:"cloud"`
	Driver  string `json:"driver"`
	Region  string `json:"region,omitempty"`
	ImageID string `json:"image_id"`
	// Source is "IMAGE_ID" or the catalogue reference.
	Source  string `json:"source"`
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
	Arch    string `json:"arch"`
	MD5     string `json:"md5,omitempty"`
}

// Resolve returns the image cloud starts. cat may be nil when no cloud uses
// a catalogue reference.
func Resolve(cat *catalogue.Catalogue, cl config.Cloud) (Choice, error) {
	ch := Choice{Cloud: cl.Name, Driver: cl.Driver, Region: cl.Region, Arch: cl.Arch}
	if cl.ImageRef == nil {
		ch.ImageID, ch.Source = cl.ImageID, "IMAGE_ID"
		return ch, nil
	}
	ref := *cl.ImageRef
	ch.Source = ref.String()
	where := describe(cl)
	if cat == nil || len(cat.Artifacts) == 0 {
		return ch, fmt.Errorf("cloud %s: IMAGE = %s but the catalogue is empty: build and register the image with cpsimage, or set CATALOGUE in [conpaas]", cl.Name, ref)
	}
	var named []catalogue.Artifact
	for _, a := range cat.Artifacts {
		if a.Name == ref.Name && (ref.Version == "" || a.Version == ref.Version) {
			named = append(named, a)
		}
	}
	if len(named) == 0 {
		return ch, fmt.Errorf("cloud %s: IMAGE = %s: the catalogue has no artifact %s (it has: %s)", cl.Name, ref, nameVersion(ref), strings.Join(artifactNames(cat), ", "))
	}
	// Newest version first, so "catalogue:conpaas" follows new releases.
	sort.SliceStable(named, func(i, j int) bool { return CompareVersions(named[i].Version, named[j].Version) > 0 })
	var elsewhere []string
	archSeen := map[string]bool{}
	for _, a := range named {
		if a.Arch != "" && string(a.Arch) != cl.Arch {
			archSeen[string(a.Arch)] = true
			continue
		}
		for _, r := range a.Registered {
			if Matches(r, cl) {
				ch.ImageID, ch.Name, ch.Version, ch.MD5 = r.ImageID, a.Name, a.Version, a.MD5
				return ch, nil
			}
			elsewhere = append(elsewhere, fmt.Sprintf("%s %s", a.Version, describeReg(r)))
		}
	}
	if len(elsewhere) == 0 && len(archSeen) > 0 {
		return ch, fmt.Errorf("cloud %s: IMAGE = %s: the catalogue has %s only for %s, not for ARCH = %s", cl.Name, ref, ref.Name, strings.Join(keys(archSeen), ", "), cl.Arch)
	}
	if len(elsewhere) == 0 {
		return ch, fmt.Errorf("cloud %s: IMAGE = %s is in the catalogue but registered nowhere: run `cpsimage register` for %s", cl.Name, ref, where)
	}
	return ch, fmt.Errorf("cloud %s: IMAGE = %s is not registered for %s (registered: %s): run `cpsimage register` for that cloud, or fix REGION/CLOUD_NAME",
		cl.Name, ref, where, strings.Join(elsewhere, "; "))
}

// Matches reports whether registration r can be started on cloud cl.
func Matches(r catalogue.Registration, cl config.Cloud) bool {
	switch cl.Driver {
	case config.DriverEC2:
		return r.Cloud == "ec2" && r.Region == cl.Region
	case config.DriverOpenStack:
		if r.Cloud != "openstack" {
			return false
		}
		if cl.CloudName != "" && r.CloudName != cl.CloudName {
			return false
		}
		// A registration without a region is valid in every region of
		// its cloud (single-region deployments often leave it out).
		return cl.Region == "" || r.Region == "" || r.Region == cl.Region
	}
	return false
}

// ResolveAll resolves every cloud of cfg, returning all errors joined.
func ResolveAll(cat *catalogue.Catalogue, cfg *config.Config) ([]Choice, error) {
	var out []Choice
	var errs []string
	for _, cl := range cfg.Clouds {
		ch, err := Resolve(cat, cl)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		out = append(out, ch)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return out, nil
}

// NeedsCatalogue reports whether any cloud uses IMAGE = catalogue:...
func NeedsCatalogue(cfg *config.Config) bool {
	for _, cl := range cfg.Clouds {
		if cl.ImageRef != nil {
			return true
		}
	}
	return false
}

func describe(cl config.Cloud) string {
	switch cl.Driver {
	case config.DriverEC2:
		return fmt.Sprintf("ec2 region %s (%s)", cl.Region, cl.Arch)
	default:
		s := "openstack"
		if cl.CloudName != "" {
			s += " cloud " + cl.CloudName
		}
		if cl.Region != "" {
			s += " region " + cl.Region
		}
		return s + " (" + cl.Arch + ")"
	}
}

func describeReg(r catalogue.Registration) string {
	s := string(r.Cloud)
	if r.CloudName != "" {
		s += " " + r.CloudName
	}
	if r.Region != "" {
		s += " " + r.Region
	}
	return s
}

func nameVersion(r config.ImageRef) string {
	if r.Version == "" {
		return r.Name
	}
	return r.Name + " version " + r.Version
}

func artifactNames(c *catalogue.Catalogue) []string {
	seen := map[string]bool{}
	for _, a := range c.Artifacts {
		seen[a.Name+"@"+a.Version] = true
	}
	return keys(seen)
}

func keys(m map[string]bool) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

// CompareVersions orders dotted versions numerically where both parts are
// numbers ("2.10" > "2.9"), lexically otherwise.
func CompareVersions(a, b string) int {
	pa, pb := strings.FieldsFunc(a, sep), strings.FieldsFunc(b, sep)
	for i := 0; i < len(pa) || i < len(pb); i++ {
		if i >= len(pa) {
			return -1
		}
		if i >= len(pb) {
			return 1
		}
		x, ex := strconv.Atoi(pa[i])
		y, ey := strconv.Atoi(pb[i])
		switch {
		case ex == nil && ey == nil:
			if x != y {
				if x < y {
					return -1
				}
				return 1
			}
		case pa[i] != pb[i]:
			if pa[i] < pb[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

func sep(r rune) bool { return r == '.' || r == '-' || r == '+' || r == '~' }
