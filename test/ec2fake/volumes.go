package ec2fake

// EBS volumes: CreateVolume, DescribeVolumes, AttachVolume, DetachVolume,
// DeleteVolume, and snapshots of volumes (CreateSnapshot,
// DescribeSnapshots), as the "via-instance" registration uses them.
//
// A volume's bytes live in a backing file, VolumeDir/<volume-id> (sparse,
// the volume's size), when the test sets VolumeDir. An instance has no
// kernel here, so what "writing to /dev/xvdf on the instance" means is up
// to the test's SSH/SFTP server: it asks AttachedFile(instance, device)
// which file the device currently is (an error when nothing is attached
// there, as the guest would have no such device node) and writes into it.
// CreateSnapshot reads the backing file into the snapshot's blocks (only
// the non-zero 512 KiB ones, as EBS stores them), so RegisterImage,
// SnapshotBytes and the rest of the fake work with it as with a snapshot
// made through the EBS direct APIs.
//
// States move one step per Describe call, like the instance boot in
// DescribeInstances: a volume is "creating" until the first
// DescribeVolumes, an attachment "attaching" (volume "in-use") until the
// next, a detaching volume becomes "available" at the next, and a snapshot
// of a volume is "pending" until the first DescribeSnapshots. So waiters
// really wait, and a client that skips them sees AWS's IncorrectState.

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/conpaas/cps/images/sparse"
)

// Volume is an EBS volume.
type Volume struct {
	ID, Region, AZ, Type, State, SnapshotID string // State: creating, available, in-use
	SizeGiB                                 int64
	// The attachment, when Instance != "": AttachState is attaching,
	// attached or detaching.
	Instance, Device, AttachState string
	Tags                          map[string]string
	// File is the backing file ("" when the fake has no VolumeDir).
	File string
}

func init() {
	actions["CreateVolume"] = (*Fake).createVolume
	actions["DescribeVolumes"] = (*Fake).describeVolumes
	actions["AttachVolume"] = (*Fake).attachVolume
	actions["DetachVolume"] = (*Fake).detachVolume
	actions["DeleteVolume"] = (*Fake).deleteVolume
	actions["CreateSnapshot"] = (*Fake).createSnapshot
	actions["DescribeSnapshots"] = (*Fake).describeSnapshots
}

// AddInstance adds an instance (as if started earlier, e.g. from the
// console) and returns it. Empty fields get defaults: a new id, state
// running, availability zone region+"a".
func (f *Fake) AddInstance(in Instance) *Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	if in.ID == "" {
		in.ID = f.id("i")
	}
	if in.State == "" {
		in.State = "running"
	}
	if in.AZ == "" {
		in.AZ = in.Region + "a"
	}
	if in.Type == "" {
		in.Type = "t3.small"
	}
	if in.Tags == nil {
		in.Tags = map[string]string{}
	}
	p := &in
	f.Instances[p.ID] = p
	return p
}

// AttachedFile returns the backing file of the volume attached to instance
// at device (/dev/sdf and /dev/xvdf are the same attachment point), i.e.
// what the guest sees at that device. It fails like opening a missing
// device node when nothing is attached there (yet).
func (f *Fake) AttachedFile(instance, device string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range f.Volumes {
		if v.Instance == instance && v.AttachState == "attached" && sameDevice(v.Device, device) {
			if v.File == "" {
				return "", fmt.Errorf("volume %s has no backing file (set VolumeDir)", v.ID)
			}
			return v.File, nil
		}
	}
	return "", fmt.Errorf("%s on %s: %w", device, instance, os.ErrNotExist)
}

func placementXML(in *Instance) string {
	s := "<placement><availabilityZone>" + placementAZ(in) + "</availabilityZone><tenancy>default</tenancy></placement>"
	if in.PublicIP != "" {
		s += "<ipAddress>" + xmlEsc(in.PublicIP) + "</ipAddress>"
	}
	return s
}

var deviceRE = regexp.MustCompile(`^/dev/(sd|xvd)([a-z])([1-9][0-5]?)?$`)

// sameDevice: EC2 treats /dev/sdX and /dev/xvdX as one attachment point.
func sameDevice(a, b string) bool {
	ma, mb := deviceRE.FindStringSubmatch(a), deviceRE.FindStringSubmatch(b)
	if ma == nil || mb == nil {
		return a == b
	}
	return ma[2] == mb[2] && ma[3] == mb[3]
}

func missing(name string) *apiError {
	return &apiError{400, "MissingParameter", "The request must contain the parameter " + name}
}

func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// tagSpec reads TagSpecification.N for resource type typ.
func tagSpec(q url.Values, typ string) (map[string]string, *apiError) {
	tags := map[string]string{}
	for i := 1; q.Get(fmt.Sprintf("TagSpecification.%d.ResourceType", i)) != ""; i++ {
		if rt := q.Get(fmt.Sprintf("TagSpecification.%d.ResourceType", i)); rt != typ {
			return nil, &apiError{400, "InvalidParameterValue", fmt.Sprintf("'%s' is not a valid taggable resource type for this operation.", rt)}
		}
		for j := 1; q.Get(fmt.Sprintf("TagSpecification.%d.Tag.%d.Key", i, j)) != ""; j++ {
			tags[q.Get(fmt.Sprintf("TagSpecification.%d.Tag.%d.Key", i, j))] = q.Get(fmt.Sprintf("TagSpecification.%d.Tag.%d.Value", i, j))
		}
	}
	return tags, nil
}

func tagSetXML(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("<tagSet>")
	for _, k := range keys {
		fmt.Fprintf(&b, "<item><key>%s</key><value>%s</value></item>", xmlEsc(k), xmlEsc(tags[k]))
	}
	b.WriteString("</tagSet>")
	return b.String()
}

func (v *Volume) attachmentXML() string {
	return fmt.Sprintf("<volumeId>%s</volumeId><instanceId>%s</instanceId><device>%s</device><status>%s</status><attachTime>%s</attachTime><deleteOnTermination>false</deleteOnTermination>",
		v.ID, v.Instance, xmlEsc(v.Device), v.AttachState, timestamp(time.Now()))
}

// volumeXML is the inner XML of a volume (an <item> of volumeSet, or the
// CreateVolume response).
func (v *Volume) volumeXML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "<volumeId>%s</volumeId><size>%d</size><snapshotId>%s</snapshotId><availabilityZone>%s</availabilityZone><status>%s</status><createTime>%s</createTime><volumeType>%s</volumeType><encrypted>false</encrypted><multiAttachEnabled>false</multiAttachEnabled>",
		v.ID, v.SizeGiB, v.SnapshotID, v.AZ, v.State, timestamp(time.Now()), v.Type)
	if v.Type == "gp3" {
		b.WriteString("<iops>3000</iops><throughput>125</throughput>")
	}
	b.WriteString("<attachmentSet>")
	if v.Instance != "" {
		b.WriteString("<item>" + v.attachmentXML() + "</item>")
	}
	b.WriteString("</attachmentSet>")
	b.WriteString(tagSetXML(v.Tags))
	return b.String()
}

func (f *Fake) volume(q url.Values, region string) (*Volume, *apiError) {
	id := q.Get("VolumeId")
	if id == "" {
		return nil, missing("VolumeId")
	}
	v := f.Volumes[id]
	if v == nil || v.Region != region {
		return nil, &apiError{400, "InvalidVolume.NotFound", "The volume '" + id + "' does not exist."}
	}
	return v, nil
}

var volumeTypes = map[string][2]int64{"gp2": {1, 16384}, "gp3": {1, 65536}, "io1": {4, 16384}, "io2": {4, 65536}, "st1": {125, 16384}, "sc1": {125, 16384}, "standard": {1, 1024}}

func (f *Fake) createVolume(q url.Values, region string) (string, *apiError) {
	az := q.Get("AvailabilityZone")
	if az == "" {
		return "", missing("AvailabilityZone")
	}
	if !strings.HasPrefix(az, region) || len(az) != len(region)+1 || az[len(az)-1] < 'a' || az[len(az)-1] > 'f' {
		return "", &apiError{400, "InvalidParameterValue", "Invalid availability zone: [" + az + "]"}
	}
	typ := q.Get("VolumeType")
	if typ == "" {
		typ = "gp2"
	}
	lim, ok := volumeTypes[typ]
	if !ok {
		return "", &apiError{400, "InvalidParameterValue", "Value (" + typ + ") for parameter volumeType is invalid."}
	}
	var src *Snapshot
	if id := q.Get("SnapshotId"); id != "" {
		src = f.Snapshots[id]
		if src == nil || src.Region != region {
			return "", &apiError{400, "InvalidSnapshot.NotFound", "The snapshot '" + id + "' does not exist."}
		}
		if src.Status != "completed" {
			return "", &apiError{400, "IncorrectState", "Snapshot '" + id + "' is not 'completed'."}
		}
	}
	var size int64
	switch s := q.Get("Size"); {
	case s != "":
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return "", &apiError{400, "InvalidParameterValue", "Value (" + s + ") for parameter size is invalid."}
		}
		size = n
	case src != nil:
		size = src.VolumeGiB
	default:
		return "", &apiError{400, "MissingParameter", "The request must contain the parameter size or snapshotId"}
	}
	if size < lim[0] || size > lim[1] || (src != nil && size < src.VolumeGiB) {
		return "", &apiError{400, "InvalidParameterValue", fmt.Sprintf("Volume of %d GiB is invalid for %s volumes (%d-%d GiB, at least the snapshot's size).", size, typ, lim[0], lim[1])}
	}
	tags, aerr := tagSpec(q, "volume")
	if aerr != nil {
		return "", aerr
	}
	v := &Volume{ID: f.id("vol"), Region: region, AZ: az, Type: typ, State: "creating", SizeGiB: size, Tags: tags}
	if src != nil {
		v.SnapshotID = src.ID
	}
	if f.VolumeDir != "" {
		v.File = filepath.Join(f.VolumeDir, v.ID)
		if err := writeBacking(v.File, size<<30, src); err != nil {
			return "", &apiError{500, "InternalError", err.Error()}
		}
	}
	if f.Volumes == nil {
		f.Volumes = map[string]*Volume{}
	}
	f.Volumes[v.ID] = v
	return v.volumeXML(), nil
}

// writeBacking makes a sparse file of size bytes holding src's blocks.
func writeBacking(path string, size int64, src *Snapshot) error {
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	err = fh.Truncate(size)
	if src != nil {
		for i, b := range src.Blocks {
			if err == nil {
				_, err = fh.WriteAt(b, int64(i)*BlockSize)
			}
		}
	}
	return errors.Join(err, fh.Close())
}

func (f *Fake) describeVolumes(q url.Values, region string) (string, *apiError) {
	ids, aerr := describedIDs(q, "DescribeVolumes", "VolumeId", f.Volumes, region, func(v *Volume) string { return v.Region },
		func(id string) *apiError {
			return &apiError{400, "InvalidVolume.NotFound", "The volume '" + id + "' does not exist."}
		})
	if aerr != nil {
		return "", aerr
	}
	var b strings.Builder
	b.WriteString("<volumeSet>")
	for _, id := range ids {
		v := f.Volumes[id]
		switch {
		case v.State == "creating":
			v.State = "available"
		case v.AttachState == "attaching":
			v.AttachState = "attached"
		case v.AttachState == "detaching":
			v.Instance, v.Device, v.AttachState, v.State = "", "", "", "available"
		}
		b.WriteString("<item>" + v.volumeXML() + "</item>")
	}
	b.WriteString("</volumeSet>")
	return b.String(), nil
}

func (f *Fake) attachVolume(q url.Values, region string) (string, *apiError) {
	for _, p := range []string{"Device", "InstanceId", "VolumeId"} {
		if q.Get(p) == "" {
			return "", missing(p)
		}
	}
	v, aerr := f.volume(q, region)
	if aerr != nil {
		return "", aerr
	}
	iid, dev := q.Get("InstanceId"), q.Get("Device")
	in := f.Instances[iid]
	switch {
	case in == nil || in.Region != region:
		return "", &apiError{400, "InvalidInstanceID.NotFound", "The instance ID '" + iid + "' does not exist"}
	case v.Instance != "":
		return "", &apiError{400, "VolumeInUse", v.ID + " is already attached to an instance"}
	case v.State != "available":
		return "", &apiError{400, "IncorrectState", v.ID + " is not 'available'."}
	case in.State != "running" && in.State != "stopped":
		return "", &apiError{400, "IncorrectInstanceState", "Instance '" + iid + "' is not 'running'."}
	case v.AZ != placementAZ(in):
		return "", &apiError{400, "InvalidVolume.ZoneMismatch", "The volume '" + v.ID + "' is not in the same availability zone as instance '" + iid + "'"}
	case !deviceRE.MatchString(dev):
		return "", &apiError{400, "InvalidParameterValue", "Value (" + dev + ") for parameter device is invalid. " + dev + " is not a valid EBS device name."}
	case sameDevice(dev, "/dev/xvda") || sameDevice(dev, "/dev/sda1"):
		return "", &apiError{400, "InvalidParameterValue", "Attachment point " + dev + " is already in use"} // the root volume
	}
	for _, o := range f.Volumes {
		if o.Instance == iid && sameDevice(o.Device, dev) {
			return "", &apiError{400, "InvalidParameterValue", "Attachment point " + dev + " is already in use"}
		}
	}
	v.Instance, v.Device, v.AttachState, v.State = iid, dev, "attaching", "in-use"
	return v.attachmentXML(), nil
}

func placementAZ(in *Instance) string {
	if in.AZ != "" {
		return in.AZ
	}
	return in.Region + "a"
}

func (f *Fake) detachVolume(q url.Values, region string) (string, *apiError) {
	v, aerr := f.volume(q, region)
	if aerr != nil {
		return "", aerr
	}
	switch {
	case v.Instance == "" || v.AttachState == "detaching":
		return "", &apiError{400, "IncorrectState", "Volume '" + v.ID + "' is in the '" + v.State + "' state."}
	case q.Get("InstanceId") != "" && q.Get("InstanceId") != v.Instance,
		q.Get("Device") != "" && !sameDevice(q.Get("Device"), v.Device):
		return "", &apiError{400, "InvalidAttachment.NotFound", "Volume '" + v.ID + "' can not be detached from '" + q.Get("InstanceId") + "' because it is not attached"}
	}
	v.AttachState = "detaching"
	return v.attachmentXML(), nil
}

func (f *Fake) deleteVolume(q url.Values, region string) (string, *apiError) {
	v, aerr := f.volume(q, region)
	if aerr != nil {
		return "", aerr
	}
	if v.Instance != "" {
		return "", &apiError{400, "VolumeInUse", "Volume " + v.ID + " is currently attached to " + v.Instance}
	}
	if v.File != "" {
		os.Remove(v.File)
	}
	delete(f.Volumes, v.ID)
	return "<return>true</return>", nil
}

func (f *Fake) createSnapshot(q url.Values, region string) (string, *apiError) {
	v, aerr := f.volume(q, region)
	if aerr != nil {
		return "", aerr
	}
	if v.State == "creating" {
		return "", &apiError{400, "IncorrectState", "Volume '" + v.ID + "' is in the 'creating' state."}
	}
	tags, aerr := tagSpec(q, "snapshot")
	if aerr != nil {
		return "", aerr
	}
	s := &Snapshot{ID: f.id("snap"), Region: region, Status: "pending", Description: q.Get("Description"), VolumeGiB: v.SizeGiB,
		Blocks: map[int32][]byte{}, Sums: map[int32][]byte{}, Tags: tags}
	if v.File != "" {
		if err := readBlocks(v.File, s); err != nil {
			return "", &apiError{500, "InternalError", err.Error()}
		}
	}
	f.Snapshots[s.ID] = s
	if f.snapVolume == nil {
		f.snapVolume = map[string]string{}
	}
	f.snapVolume[s.ID] = v.ID
	return f.snapshotXML(s), nil
}

// readBlocks reads the non-zero 512 KiB blocks of a backing file (its data
// extents only) into s.
func readBlocks(path string, s *Snapshot) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	ext, err := sparse.DataExtents(fh)
	if err != nil {
		return err
	}
	for _, e := range ext {
		for b := e.Off / BlockSize; b*BlockSize < e.End(); b++ {
			if s.Blocks[int32(b)] != nil {
				continue
			}
			buf := make([]byte, BlockSize)
			if _, err := fh.ReadAt(buf, b*BlockSize); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			if !sparse.IsZero(buf) {
				s.Blocks[int32(b)] = buf
			}
		}
	}
	return nil
}

func (f *Fake) snapshotXML(s *Snapshot) string {
	prog := "0%"
	if s.Status == "completed" {
		prog = "100%"
	}
	vol := f.snapVolume[s.ID]
	if vol == "" {
		vol = "vol-ffffffff" // what AWS shows for snapshots not taken from a volume
	}
	return fmt.Sprintf("<snapshotId>%s</snapshotId><volumeId>%s</volumeId><status>%s</status><startTime>%s</startTime><progress>%s</progress><ownerId>123456789012</ownerId><volumeSize>%d</volumeSize><description>%s</description><encrypted>false</encrypted><storageTier>standard</storageTier>%s",
		s.ID, vol, s.Status, timestamp(time.Now()), prog, s.VolumeGiB, xmlEsc(s.Description), tagSetXML(s.Tags))
}

func (f *Fake) describeSnapshots(q url.Values, region string) (string, *apiError) {
	ids, aerr := describedIDs(q, "DescribeSnapshots", "SnapshotId", f.Snapshots, region, func(s *Snapshot) string { return s.Region },
		func(id string) *apiError {
			return &apiError{400, "InvalidSnapshot.NotFound", "The snapshot '" + id + "' does not exist."}
		})
	if aerr != nil {
		return "", aerr
	}
	var b strings.Builder
	b.WriteString("<snapshotSet>")
	for _, id := range ids {
		s := f.Snapshots[id]
		// A snapshot of a volume completes by itself; one made through the
		// EBS direct APIs only with CompleteSnapshot.
		if s.Status == "pending" && f.snapVolume[id] != "" {
			s.Status = "completed"
		}
		b.WriteString("<item>" + f.snapshotXML(s) + "</item>")
	}
	b.WriteString("</snapshotSet>")
	return b.String(), nil
}

// describedIDs are the ids a Describe* call asks for (param.1, param.2, ...;
// each must exist in region), or all of region's, sorted, when it names none.
func describedIDs[T any](q url.Values, action, param string, all map[string]T, region string, regionOf func(T) string, notFound func(string) *apiError) ([]string, *apiError) {
	for k := range q {
		if strings.HasPrefix(k, "Filter.") {
			return nil, &apiError{400, "InvalidParameterValue", "this fake does not implement " + action + " filters; ask by " + param}
		}
	}
	var ids []string
	for i := 1; q.Get(fmt.Sprintf("%s.%d", param, i)) != ""; i++ {
		id := q.Get(fmt.Sprintf("%s.%d", param, i))
		if v, ok := all[id]; !ok || regionOf(v) != region {
			return nil, notFound(id)
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		for id, v := range all {
			if regionOf(v) == region {
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
	}
	return ids, nil
}
