// Package catalogue is the image catalogue: one JSON file listing every
// artifact cpsimage built or registered, read by cpsdirector to decide which
// image to start on which cloud. Field order is fixed by the structs and
// lists are kept sorted, so the file diffs well under version control.
package catalogue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/conpaas/cps/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// SchemaVersion is written to every catalogue; readers refuse newer ones.
const SchemaVersion = 1

// DefaultPath is used when neither --catalogue nor CPS_CATALOGUE is set.
const DefaultPath = "catalogue.json"

// Catalogue is the whole file.
type Catalogue struct {
	SchemaVersion int        `json:"schema_version"`
	Artifacts     []Artifact `json:"artifacts"`
}

// Artifact is one built file.
type Artifact struct {
	Name         string         `json:"name"`
	Version      string         `json:"version"`
	Kind         Kind           `json:"kind"`             // KindRaw, ...
	Format       Format         `json:"format,omitempty"` // FormatRaw, ...: the file's layout ("" in catalogues before it was recorded: raw)
	Arch         Arch           `json:"arch"`
	Boot         BootModes      `json:"boot,omitempty"` // the firmware interfaces it boots from (none: not bootable, or not recorded)
	File         string         `json:"file"`
	Size         int64          `json:"size"`
	MD5          string         `json:"md5"`
	SHA256       string         `json:"sha256"`
	InputsDigest string         `json:"inputs_digest,omitempty"`
	Built        time.Time      `json:"built"` // when the file was built (not SOURCE_DATE_EPOCH, which pins the times inside it)
	Registered   []Registration `json:"registrations,omitempty"`
}

// Registration says where an artifact can be started.
type Registration struct {
	// Cloud is CloudEC2 or CloudOpenStack.
	Cloud Cloud `json:"cloud"`
	// Target is the registration method: ec2-ebs, ec2-s3, glance.
	Target string `json:"target"`
	// Region is the EC2 region, or the OpenStack region if any.
	Region string `json:"region,omitempty"`
	// CloudName is the clouds.yaml entry (OpenStack) or the account/profile (EC2).
	CloudName  string `json:"cloud_name,omitempty"`
	ImageID    string `json:"image_id"`
	SnapshotID string `json:"snapshot_id,omitempty"`
	// Location is where an S3-backed AMI's bundle manifest is (bucket/key).
	Location string    `json:"location,omitempty"`
	Time     time.Time `json:"time"`
}

// Find returns the artifact named name (newest version first), or nil.
func (c *Catalogue) Find(name string) *Artifact {
	for i := range c.Artifacts {
		if c.Artifacts[i].Name == name {
			return &c.Artifacts[i]
		}
	}
	return nil
}

// FindVersion returns the artifact name at version, or nil.
func (c *Catalogue) FindVersion(name, version string) *Artifact {
	for i := range c.Artifacts {
		if c.Artifacts[i].Name == name && c.Artifacts[i].Version == version {
			return &c.Artifacts[i]
		}
	}
	return nil
}

// Put adds a, replacing an artifact with the same name and version but
// keeping its registrations when the bytes (MD5) did not change.
func (c *Catalogue) Put(a Artifact) {
	for i := range c.Artifacts {
		old := &c.Artifacts[i]
		if old.Name == a.Name && old.Version == a.Version {
			if old.MD5 == a.MD5 && len(a.Registered) == 0 {
				a.Registered = old.Registered
			}
			*old = a
			c.sort()
			return
		}
	}
	c.Artifacts = append(c.Artifacts, a)
	c.sort()
}

// SetRegistration records r for the artifact name/version, replacing an
// earlier one for the same cloud, target, region and cloud name.
func (c *Catalogue) SetRegistration(name, version string, r Registration) error {
	for i := range c.Artifacts {
		a := &c.Artifacts[i]
		if a.Name != name || (version != "" && a.Version != version) {
			continue
		}
		a.SetRegistration(r)
		return nil
	}
	return fmt.Errorf("catalogue has no artifact %q version %q: run `cpsimage build` or `cpsimage catalogue add` first", name, version)
}

// SetRegistration records r for a, replacing an earlier one for the same
// cloud, target, region and cloud name.
func (a *Artifact) SetRegistration(r Registration) {
	for j := range a.Registered {
		o := a.Registered[j]
		if o.Cloud == r.Cloud && o.Target == r.Target && o.Region == r.Region && o.CloudName == r.CloudName {
			a.Registered[j] = r
			return
		}
	}
	a.Registered = append(a.Registered, r)
	sort.SliceStable(a.Registered, func(x, y int) bool {
		p, q := a.Registered[x], a.Registered[y]
		if p.Cloud != q.Cloud {
			return p.Cloud < q.Cloud
		}
		if p.CloudName != q.CloudName {
			return p.CloudName < q.CloudName
		}
		return p.Region < q.Region
	})
}

func (c *Catalogue) sort() {
	sort.SliceStable(c.Artifacts, func(i, j int) bool {
		if c.Artifacts[i].Name != c.Artifacts[j].Name {
			return c.Artifacts[i].Name < c.Artifacts[j].Name
		}
		return c.Artifacts[i].Version > c.Artifacts[j].Version
	})
}

// Parse decodes a catalogue, rejecting newer schemas, unknown fields and
// malformed entries; the error (a *ParseError) gives each problem's line
// and column.
func Parse(data []byte) (*Catalogue, error) {
	ps := &problems{data: data}
	if !syntax(data, ps) {
		return nil, ps.err()
	}
	l, err := scan(data, ps)
	if err != nil {
		return nil, fmt.Errorf("read catalogue: %w", err) // valid JSON that the scanner could not walk: a bug
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	var c Catalogue
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			// Offset is just past the value of the wrong type.
			ps.add(valueStart(data, te.Offset), "%s is %s, not %s", fieldName(te.Field), jsonKind(te.Value), goType(te.Type))
		} else {
			ps.add(dec.InputOffset(), "%v", err)
		}
		return nil, ps.err()
	}
	check(&c, l, ps)
	if err := ps.err(); err != nil {
		return nil, err
	}
	return &c, nil
}

func lineCol(data []byte, off int64) (int, int) {
	line, col := 1, 1
	for i := int64(0); i < off && i < int64(len(data)); i++ {
		if data[i] == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

// MaxFileSize bounds what Load reads: a catalogue holds some hundred
// bytes per artifact, and `-f /dev/zero` (or a disk image given by
// mistake) was read whole, until the kernel killed the process.
const MaxFileSize = 64 << 20

// Load reads path; a missing file is an empty catalogue.
func Load(path string) (*Catalogue, error) {
	// O_NONBLOCK: opening a FIFO with no writer blocked in the kernel,
	// where Ctrl-C could not end it; now it reads as empty (and a pipe
	// with a writer, as from <(...), is read as before). Reads block again.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err == nil {
		if serr := unix.SetNonblock(int(f.Fd()), false); serr != nil {
			f.Close()
			return nil, fmt.Errorf("read catalogue: %w", serr)
		}
	}
	if errors.Is(err, os.ErrNotExist) {
		return &Catalogue{SchemaVersion: SchemaVersion}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read catalogue: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read catalogue: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("catalogue %s is over %d bytes, far more than a catalogue holds: is it the right file?", path, MaxFileSize)
	}
	c, err := Parse(data)
	var pe *ParseError
	if errors.As(err, &pe) {
		pe.Path = path // each problem's line says which file
		return nil, pe
	}
	if err != nil {
		return nil, fmt.Errorf("catalogue %s: %w", path, err)
	}
	return c, nil
}

// Marshal renders the catalogue as indented JSON with a trailing newline.
func (c *Catalogue) Marshal() ([]byte, error) {
	c.SchemaVersion = SchemaVersion
	if c.Artifacts == nil {
		c.Artifacts = []Artifact{}
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Update applies fn to the catalogue at path under an exclusive lock (a
// PATH.lock file, so concurrent cpsimage runs merge instead of overwriting
// each other) and writes the result atomically. If fn fails nothing changes.
func Update(path string, fn func(*Catalogue) error) error {
	// The lock file is created beside path: -f /dev/full made
	// /dev/full.lock before the device was found not to be a catalogue,
	// and -f in a missing directory said only "open ...lock: no such file".
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("catalogue %s is not a regular file (%v): pass -f with the path of a catalogue file", path, fi.Mode().Type())
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cannot write catalogue %s: its directory %s does not exist; create it first or pass another -f", path, filepath.Dir(path))
	}
	if err != nil {
		return fmt.Errorf("lock catalogue: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock catalogue %s: %w", path, err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	c, err := Load(path)
	if err != nil {
		return err
	}
	if err := fn(c); err != nil {
		return err
	}
	b, err := c.Marshal()
	if err != nil {
		return err
	}
	// What is written must read back: a caller's bad artifact (a
	// negative size, a missing sum) is refused here, not by every later
	// reader of the file.
	if _, err := Parse(b); err != nil {
		return fmt.Errorf("refusing to write catalogue %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, b, 0o644)
}
