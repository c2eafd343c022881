// Package ec2fake is an in-process fake of the EC2 Query API and the EBS
// direct APIs, for tests through the real aws-sdk-go-v2 clients. No EC2
// emulator runs here, so the fake is strict where AWS is: every request's
// SigV4 signature is recomputed and compared (wrong secret, wrong region,
// stale date: rejected with AWS's error codes), EBS blocks must be 512 KiB
// with a matching SHA256 checksum and an index inside the volume, and
// CompleteSnapshot checks the changed-block count and the LINEAR aggregated
// checksum. It keeps state (snapshots with their blocks, images per region)
// so DescribeImages, CopyImage and waiters work, and tests can read a
// snapshot back and compare it with the image.
package ec2fake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// BlockSize is the EBS direct APIs' block size.
const BlockSize = 512 << 10

// Snapshot is an EBS snapshot the fake holds.
type Snapshot struct {
	ID, Region, Status, Description string
	VolumeGiB                       int64
	Blocks                          map[int32][]byte
	Sums                            map[int32][]byte // raw SHA256 per block
	Tags                            map[string]string
}

// Image is an AMI.
type Image struct {
	ID, Region, Name, State, Arch, RootDevice, SnapshotID, BootMode, Virt string
	ENA, Public                                                           bool
	Location                                                              string // instance-store AMIs: the bundle manifest
	Tags                                                                  map[string]string
}

// Instance is a running (or terminated) EC2 instance.
type Instance struct {
	ID, Region, ImageID, Type, KeyName, State string
	SecurityGroups                            []string
	UserData                                  []byte
	Tags                                      map[string]string
	// AZ is the instance's availability zone (default: the region + "a");
	// PublicIP its public address, if any (volumes.go).
	AZ, PublicIP string
}

// SecurityGroup is an EC2-Classic/default-VPC security group by name.
type SecurityGroup struct {
	Name, Region string
	TCPPorts     map[int]bool
}

// Fake is the server.
type Fake struct {
	URL       string
	AccessKey string
	Secret    string

	mu        sync.Mutex
	Snapshots map[string]*Snapshot
	Images    map[string]*Image
	Instances map[string]*Instance
	Groups    map[string]*SecurityGroup // by region + "/" + name
	Requests  map[string]int            // by operation
	// S3 lets the fake read bundles and imports from S3 (s3images.go).
	S3 S3Side
	// FailPut makes every PutSnapshotBlock from the Nth on (1-based) fail
	// with a non-retryable error; Throttle makes every Kth request answer
	// 429 ThrottlingException (EBS) or 503 RequestLimitExceeded (EC2).
	FailPut  int
	Throttle int
	// Latency is added to every EBS block request, as a WAN round trip to
	// AWS would (loopback has none, which hides what parallelism buys).
	Latency time.Duration
	// InstanceIP, when set, is the public address of instances
	// RunInstances makes (a director test serves their manager there).
	// RunDelay holds RunInstances' answer back after the instance exists,
	// as a slow API would (crash tests kill the caller meanwhile).
	InstanceIP string
	RunDelay   time.Duration
	tokens     map[string]string // RunInstances ClientToken -> instance
	n          int
	puts       int
	srv        *httptest.Server
	seq        int

	// EBS volumes (volumes.go). VolumeDir, set by a test, holds one
	// backing file per volume, VolumeDir/<volume-id>, which CreateSnapshot
	// reads and a test's SFTP server writes into.
	Volumes    map[string]*Volume
	VolumeDir  string
	snapVolume map[string]string // snapshot id -> the volume it was taken from
}

// Start runs a fake on 127.0.0.1.
func Start() *Fake {
	f := &Fake{AccessKey: "AKIDCPSFAKE", Secret: "cps-fake-secret", Snapshots: map[string]*Snapshot{}, Images: map[string]*Image{},
		Instances: map[string]*Instance{}, Groups: map[string]*SecurityGroup{}, Requests: map[string]int{}}
	f.srv = httptest.NewServer(f)
	f.URL = f.srv.URL
	return f
}

// Close stops the server.
func (f *Fake) Close() { f.srv.Close() }

// Credentials are the fake's valid credentials.
func (f *Fake) Credentials() aws.Credentials {
	return aws.Credentials{AccessKeyID: f.AccessKey, SecretAccessKey: f.Secret, Source: "ec2fake"}
}

var credRE = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$`)

// verify recomputes the request's SigV4 signature. It returns the region
// and service of the credential scope.
func (f *Fake) verify(r *http.Request, body []byte) (string, string, *apiError) {
	m := credRE.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		return "", "", &apiError{403, "MissingAuthenticationToken", "Request is missing Authentication Token"}
	}
	key, day, region, service, signed, sig := m[1], m[2], m[3], m[4], m[5], m[6]
	if key != f.AccessKey {
		return "", "", &apiError{401, "AuthFailure", "AWS was not able to validate the provided access credentials"}
	}
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || when.Format("20060102") != day {
		return "", "", &apiError{403, "IncompleteSignature", "X-Amz-Date is missing or does not match the credential scope"}
	}
	if d := time.Since(when); d > 5*time.Minute || d < -5*time.Minute {
		return "", "", &apiError{403, "RequestExpired", "Request has expired (signature date is more than 5 minutes off)"}
	}
	if !knownRegion(region) {
		return "", "", &apiError{401, "AuthFailure", fmt.Sprintf("region %q is not a valid region", region)}
	}
	// Rebuild the request with only the signed headers and sign it again.
	u := *r.URL
	u.Host = r.Host
	u.Scheme = "http"
	c, _ := http.NewRequest(r.Method, u.String(), bytes.NewReader(body))
	for _, h := range strings.Split(signed, ";") {
		if h == "host" {
			continue
		}
		for _, v := range r.Header.Values(h) {
			c.Header.Add(h, v)
		}
	}
	c.Host = r.Host
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if payload == "" {
		s := sha256.Sum256(body)
		payload = fmt.Sprintf("%x", s)
	} else if payload != "UNSIGNED-PAYLOAD" {
		s := sha256.Sum256(body)
		if fmt.Sprintf("%x", s) != payload {
			return "", "", &apiError{400, "XAmzContentSHA256Mismatch", "The provided x-amz-content-sha256 header does not match what was computed"}
		}
	}
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = service == "s3" })
	err = signer.SignHTTP(context.Background(), f.Credentials(), c, payload, service, region, when)
	if err != nil {
		return "", "", &apiError{500, "InternalError", err.Error()}
	}
	m2 := credRE.FindStringSubmatch(c.Header.Get("Authorization"))
	if m2 == nil || m2[6] != sig {
		return "", "", &apiError{403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided"}
	}
	return region, service, nil
}

// Regions the fake accepts: the ones the ConPaaS guide publishes AMIs in.
var Regions = []string{"us-east-1", "us-west-1", "us-west-2", "eu-west-1", "ap-northeast-1", "ap-southeast-1", "ap-southeast-2", "sa-east-1"}

func knownRegion(r string) bool {
	for _, k := range Regions {
		if k == r {
			return true
		}
	}
	return false
}

type apiError struct {
	status        int
	code, message string
}

func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	region, service, aerr := f.verify(r, body)
	f.mu.Lock()
	f.n++
	throttle := f.Throttle > 0 && f.n%f.Throttle == 0
	f.mu.Unlock()
	if aerr == nil && throttle {
		if service == "ebs" {
			aerr = &apiError{429, "ThrottlingException", "Rate exceeded"}
		} else {
			aerr = &apiError{503, "RequestLimitExceeded", "Request limit exceeded."}
		}
	}
	if aerr != nil {
		if service == "ebs" || strings.HasPrefix(r.URL.Path, "/snapshots") {
			jsonError(w, aerr)
		} else {
			xmlError(w, aerr)
		}
		return
	}
	if service == "ebs" {
		if f.Latency > 0 && r.Method == "PUT" {
			time.Sleep(f.Latency)
		}
		f.serveEBS(w, r, body, region)
		return
	}
	f.serveEC2(w, r, body, region)
}

func jsonError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", e.code)
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(map[string]string{"__type": e.code, "message": e.message})
}

func xmlError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(e.status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>cps-fake</RequestID></Response>`, e.code, xmlEsc(e.message))
}

func xmlEsc(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (f *Fake) id(prefix string) string {
	f.seq++
	return fmt.Sprintf("%s-%017x", prefix, 0xc95000+f.seq)
}

var (
	putRE      = regexp.MustCompile(`^/snapshots/([^/]+)/blocks/(\d+)$`)
	completeRE = regexp.MustCompile(`^/snapshots/completion/([^/]+)$`)
)

func (f *Fake) serveEBS(w http.ResponseWriter, r *http.Request, body []byte, region string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == "POST" && r.URL.Path == "/snapshots":
		f.Requests["StartSnapshot"]++
		var in struct {
			VolumeSize  int64
			Description string
			Tags        []struct{ Key, Value string }
		}
		if err := json.Unmarshal(body, &in); err != nil || in.VolumeSize < 1 || in.VolumeSize > 65536 {
			jsonError(w, &apiError{400, "ValidationException", "VolumeSize must be 1-65536 GiB"})
			return
		}
		s := &Snapshot{ID: f.id("snap"), Region: region, Status: "pending", Description: in.Description, VolumeGiB: in.VolumeSize,
			Blocks: map[int32][]byte{}, Sums: map[int32][]byte{}, Tags: map[string]string{}}
		for _, t := range in.Tags {
			s.Tags[t.Key] = t.Value
		}
		f.Snapshots[s.ID] = s
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(201)
		json.NewEncoder(w).Encode(map[string]any{"SnapshotId": s.ID, "Status": "pending", "VolumeSize": s.VolumeGiB, "BlockSize": BlockSize,
			"StartTime": float64(time.Now().Unix()), "OwnerId": "123456789012", "Description": s.Description})
	case r.Method == "PUT" && putRE.MatchString(r.URL.Path):
		f.Requests["PutSnapshotBlock"]++
		f.puts++
		if f.FailPut > 0 && f.puts >= f.FailPut {
			jsonError(w, &apiError{400, "ValidationException", "injected failure"})
			return
		}
		m := putRE.FindStringSubmatch(r.URL.Path)
		s := f.Snapshots[m[1]]
		idx, _ := strconv.Atoi(m[2])
		switch {
		case s == nil || s.Region != region:
			jsonError(w, &apiError{404, "ResourceNotFoundException", "snapshot " + m[1] + " not found"})
		case s.Status != "pending":
			jsonError(w, &apiError{400, "ValidationException", "snapshot is " + s.Status})
		case int64(idx) >= s.VolumeGiB<<30/BlockSize:
			jsonError(w, &apiError{400, "ValidationException", fmt.Sprintf("block index %d is past the end of a %d GiB volume", idx, s.VolumeGiB)})
		case len(body) != BlockSize || r.Header.Get("X-Amz-Data-Length") != strconv.Itoa(BlockSize):
			jsonError(w, &apiError{400, "ValidationException", fmt.Sprintf("block data must be %d bytes, got %d", BlockSize, len(body))})
		case r.Header.Get("X-Amz-Checksum-Algorithm") != "SHA256":
			jsonError(w, &apiError{400, "ValidationException", "x-amz-Checksum-Algorithm must be SHA256"})
		default:
			sum := sha256.Sum256(body)
			if base64.StdEncoding.EncodeToString(sum[:]) != r.Header.Get("X-Amz-Checksum") {
				jsonError(w, &apiError{400, "ValidationException", "checksum does not match the block data"})
				return
			}
			s.Blocks[int32(idx)] = body
			s.Sums[int32(idx)] = sum[:]
			w.Header().Set("X-Amz-Checksum", base64.StdEncoding.EncodeToString(sum[:]))
			w.Header().Set("X-Amz-Checksum-Algorithm", "SHA256")
			w.WriteHeader(201)
			w.Write([]byte("{}"))
		}
	case r.Method == "POST" && completeRE.MatchString(r.URL.Path):
		f.Requests["CompleteSnapshot"]++
		s := f.Snapshots[completeRE.FindStringSubmatch(r.URL.Path)[1]]
		if s == nil || s.Region != region {
			jsonError(w, &apiError{404, "ResourceNotFoundException", "snapshot not found"})
			return
		}
		n, _ := strconv.Atoi(r.Header.Get("X-Amz-Changedblockscount"))
		if n != len(s.Blocks) {
			s.Status = "error"
			jsonError(w, &apiError{400, "ValidationException", fmt.Sprintf("ChangedBlocksCount %d, but %d blocks were written", n, len(s.Blocks))})
			return
		}
		if len(s.Blocks) > 0 {
			if r.Header.Get("X-Amz-Checksum-Aggregation-Method") != "LINEAR" || r.Header.Get("X-Amz-Checksum-Algorithm") != "SHA256" {
				jsonError(w, &apiError{400, "ValidationException", "aggregated checksum must be SHA256 LINEAR"})
				return
			}
			idx := make([]int, 0, len(s.Sums))
			for i := range s.Sums {
				idx = append(idx, int(i))
			}
			sort.Ints(idx)
			h := sha256.New()
			for _, i := range idx {
				h.Write(s.Sums[int32(i)])
			}
			if base64.StdEncoding.EncodeToString(h.Sum(nil)) != r.Header.Get("X-Amz-Checksum") {
				s.Status = "error"
				jsonError(w, &apiError{400, "ValidationException", "aggregated checksum does not match the blocks"})
				return
			}
		}
		s.Status = "completed"
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(202)
		w.Write([]byte(`{"Status":"completed"}`))
	default:
		jsonError(w, &apiError{404, "ResourceNotFoundException", r.Method + " " + r.URL.Path})
	}
}

// SnapshotBytes returns the first n bytes of a snapshot's volume (zeros
// where no block was written).
func (f *Fake) SnapshotBytes(id string, n int64) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]byte, n)
	s := f.Snapshots[id]
	if s == nil {
		return nil
	}
	for i, b := range s.Blocks {
		off := int64(i) * BlockSize
		if off < n {
			copy(out[off:], b)
		}
	}
	return out
}

const ec2NS = "http://ec2.amazonaws.com/doc/2016-11-15/"

func (f *Fake) serveEC2(w http.ResponseWriter, r *http.Request, body []byte, region string) {
	q, err := url.ParseQuery(string(body))
	if err != nil || r.Method != "POST" {
		xmlError(w, &apiError{400, "InvalidRequest", "expected a POST form"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	action := q.Get("Action")
	f.Requests[action]++
	reply := func(inner string) {
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><%sResponse xmlns="%s"><requestId>cps-fake</requestId>%s</%sResponse>`, action, ec2NS, inner, action)
	}
	switch action {
	case "RegisterImage":
		if q.Get("ImageLocation") != "" {
			inner, aerr := f.registerBundle(q, region)
			if aerr != nil {
				xmlError(w, aerr)
				return
			}
			reply(inner)
			return
		}
		snap := q.Get("BlockDeviceMapping.1.Ebs.SnapshotId")
		s := f.Snapshots[snap]
		switch {
		case q.Get("Name") == "":
			xmlError(w, &apiError{400, "MissingParameter", "The request must contain the parameter Name"})
			return
		case s == nil || s.Region != region:
			xmlError(w, &apiError{400, "InvalidSnapshot.NotFound", fmt.Sprintf("The snapshot '%s' does not exist.", snap)})
			return
		case s.Status != "completed":
			xmlError(w, &apiError{400, "IncorrectState", "Snapshot " + snap + " is not completed"})
			return
		case q.Get("RootDeviceName") != q.Get("BlockDeviceMapping.1.DeviceName"):
			xmlError(w, &apiError{400, "InvalidBlockDeviceMapping", "the root device must be mapped to the snapshot"})
			return
		}
		for _, img := range f.Images {
			if img.Region == region && img.Name == q.Get("Name") && img.State != "deregistered" {
				xmlError(w, &apiError{400, "InvalidAMIName.Duplicate", "AMI name " + img.Name + " is already in use by AMI " + img.ID})
				return
			}
		}
		img := &Image{ID: f.id("ami"), Region: region, Name: q.Get("Name"), State: "available", Arch: q.Get("Architecture"),
			RootDevice: q.Get("RootDeviceName"), SnapshotID: snap, BootMode: q.Get("BootMode"), Virt: q.Get("VirtualizationType"),
			ENA: q.Get("EnaSupport") == "true", Tags: map[string]string{}}
		f.Images[img.ID] = img
		reply("<imageId>" + img.ID + "</imageId>")
	case "CopyImage":
		src := f.Images[q.Get("SourceImageId")]
		if src == nil || src.Region != q.Get("SourceRegion") {
			xmlError(w, &apiError{400, "InvalidAMIID.NotFound", "The image id '[" + q.Get("SourceImageId") + "]' does not exist in " + q.Get("SourceRegion")})
			return
		}
		cp := *src
		cp.ID, cp.Region, cp.Name, cp.Tags = f.id("ami"), region, q.Get("Name"), map[string]string{}
		f.Images[cp.ID] = &cp
		reply("<imageId>" + cp.ID + "</imageId>")
	case "DescribeImages":
		var b strings.Builder
		b.WriteString("<imagesSet>")
		ids, names := map[string]bool{}, map[string]bool{}
		for k, v := range q {
			if strings.HasPrefix(k, "ImageId.") {
				ids[v[0]] = true
			}
			// Filter.N.Name=name with Filter.N.Value.M (the only filter used).
			if strings.HasPrefix(k, "Filter.") && strings.HasSuffix(k, ".Name") {
				if v[0] != "name" {
					xmlError(w, &apiError{400, "InvalidParameterValue", "the fake filters images by name only, not " + v[0]})
					return
				}
				n := strings.TrimSuffix(k, ".Name")
				for j := 1; q.Get(fmt.Sprintf("%s.Value.%d", n, j)) != ""; j++ {
					names[q.Get(fmt.Sprintf("%s.Value.%d", n, j))] = true
				}
			}
		}
		keys := make([]string, 0, len(f.Images))
		for k := range f.Images {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			img := f.Images[k]
			if img.Region != region || (len(ids) > 0 && !ids[img.ID]) || (len(names) > 0 && !names[img.Name]) || img.State == "deregistered" {
				continue
			}
			fmt.Fprintf(&b, "<item><imageId>%s</imageId><imageState>%s</imageState><name>%s</name><architecture>%s</architecture><rootDeviceName>%s</rootDeviceName><rootDeviceType>ebs</rootDeviceType><virtualizationType>%s</virtualizationType><enaSupport>%v</enaSupport><isPublic>%v</isPublic><bootMode>%s</bootMode><blockDeviceMapping><item><deviceName>%s</deviceName><ebs><snapshotId>%s</snapshotId></ebs></item></blockDeviceMapping><tagSet>%s</tagSet></item>",
				img.ID, img.State, xmlEsc(img.Name), img.Arch, img.RootDevice, img.Virt, img.ENA, img.Public, img.BootMode, img.RootDevice, img.SnapshotID, tagSet(img.Tags))
		}
		b.WriteString("</imagesSet>")
		reply(b.String())
	case "ModifyImageAttribute":
		img := f.Images[q.Get("ImageId")]
		if img == nil || img.Region != region {
			xmlError(w, &apiError{400, "InvalidAMIID.NotFound", "no such image"})
			return
		}
		if q.Get("LaunchPermission.Add.1.Group") == "all" {
			img.Public = true
		}
		reply("<return>true</return>")
	case "CreateTags":
		for i := 1; q.Get(fmt.Sprintf("ResourceId.%d", i)) != ""; i++ {
			id := q.Get(fmt.Sprintf("ResourceId.%d", i))
			var tags map[string]string
			if img := f.Images[id]; img != nil {
				tags = img.Tags
			} else if s := f.Snapshots[id]; s != nil {
				tags = s.Tags
			} else {
				xmlError(w, &apiError{400, "InvalidID", "The ID '" + id + "' is not valid"})
				return
			}
			for j := 1; q.Get(fmt.Sprintf("Tag.%d.Key", j)) != ""; j++ {
				tags[q.Get(fmt.Sprintf("Tag.%d.Key", j))] = q.Get(fmt.Sprintf("Tag.%d.Value", j))
			}
		}
		reply("<return>true</return>")
	case "DeregisterImage":
		img := f.Images[q.Get("ImageId")]
		if img == nil {
			xmlError(w, &apiError{400, "InvalidAMIID.NotFound", "no such image"})
			return
		}
		delete(f.Images, img.ID)
		reply("<return>true</return>")
	case "DeleteSnapshot":
		id := q.Get("SnapshotId")
		for _, img := range f.Images {
			if img.SnapshotID == id && img.Region == region {
				xmlError(w, &apiError{400, "InvalidSnapshot.InUse", "The snapshot " + id + " is currently in use by " + img.ID})
				return
			}
		}
		if f.Snapshots[id] == nil {
			xmlError(w, &apiError{400, "InvalidSnapshot.NotFound", "The snapshot '" + id + "' does not exist."})
			return
		}
		delete(f.Snapshots, id)
		reply("<return>true</return>")
	case "RunInstances":
		// ClientToken makes the call idempotent, as on EC2.
		if id, ok := f.tokens[q.Get("ClientToken")]; ok && q.Get("ClientToken") != "" {
			reply("<reservationId>r-cps</reservationId><ownerId>123456789012</ownerId><instancesSet>" + instanceXML(f.Instances[id]) + "</instancesSet>")
			return
		}
		img := f.Images[q.Get("ImageId")]
		switch {
		case img == nil || img.Region != region:
			xmlError(w, &apiError{400, "InvalidAMIID.NotFound", "The image id '[" + q.Get("ImageId") + "]' does not exist"})
			return
		case q.Get("MinCount") != "1" || q.Get("MaxCount") != "1":
			xmlError(w, &apiError{400, "InvalidParameterValue", "this fake starts one instance at a time"})
			return
		case q.Get("InstanceType") == "":
			xmlError(w, &apiError{400, "MissingParameter", "InstanceType"})
			return
		}
		in := &Instance{ID: f.id("i"), Region: region, ImageID: img.ID, Type: q.Get("InstanceType"), KeyName: q.Get("KeyName"), State: "pending", Tags: map[string]string{}}
		for i := 1; q.Get(fmt.Sprintf("SecurityGroup.%d", i)) != ""; i++ {
			g := q.Get(fmt.Sprintf("SecurityGroup.%d", i))
			if f.Groups[region+"/"+g] == nil {
				xmlError(w, &apiError{400, "InvalidGroup.NotFound", "The security group '" + g + "' does not exist"})
				return
			}
			in.SecurityGroups = append(in.SecurityGroups, g)
		}
		if ud := q.Get("UserData"); ud != "" {
			b, err := base64.StdEncoding.DecodeString(ud)
			if err != nil {
				xmlError(w, &apiError{400, "InvalidParameterValue", "Invalid BASE64 encoding of user data"})
				return
			}
			in.UserData = b
		}
		for j := 1; q.Get(fmt.Sprintf("TagSpecification.1.Tag.%d.Key", j)) != ""; j++ {
			in.Tags[q.Get(fmt.Sprintf("TagSpecification.1.Tag.%d.Key", j))] = q.Get(fmt.Sprintf("TagSpecification.1.Tag.%d.Value", j))
		}
		in.PublicIP = f.InstanceIP
		f.Instances[in.ID] = in
		if tok := q.Get("ClientToken"); tok != "" {
			if f.tokens == nil {
				f.tokens = map[string]string{}
			}
			f.tokens[tok] = in.ID
		}
		if f.RunDelay > 0 {
			f.mu.Unlock()
			time.Sleep(f.RunDelay)
			f.mu.Lock()
		}
		reply("<reservationId>r-cps</reservationId><ownerId>123456789012</ownerId><instancesSet>" + instanceXML(in) + "</instancesSet>")
	case "DescribeInstances":
		var b strings.Builder
		b.WriteString("<reservationSet>")
		if q.Get("InstanceId.1") == "" {
			// Every instance of the region matching the filters
			// (tag:KEY and instance-state-name, as a director's listing
			// uses them).
			ids := make([]string, 0, len(f.Instances))
			for id := range f.Instances {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			for _, id := range ids {
				if in := f.Instances[id]; in.Region == region && matchFilters(q, in) {
					b.WriteString("<item><reservationId>r-cps</reservationId><instancesSet>" + instanceXML(in) + "</instancesSet></item>")
				}
			}
		}
		for i := 1; q.Get(fmt.Sprintf("InstanceId.%d", i)) != ""; i++ {
			in := f.Instances[q.Get(fmt.Sprintf("InstanceId.%d", i))]
			if in == nil || in.Region != region {
				xmlError(w, &apiError{400, "InvalidInstanceID.NotFound", "The instance ID '" + q.Get(fmt.Sprintf("InstanceId.%d", i)) + "' does not exist"})
				return
			}
			if in.State == "pending" {
				in.State = "running" // it boots between two calls
			}
			b.WriteString("<item><reservationId>r-cps</reservationId><instancesSet>" + instanceXML(in) + "</instancesSet></item>")
		}
		b.WriteString("</reservationSet>")
		reply(b.String())
	case "TerminateInstances":
		in := f.Instances[q.Get("InstanceId.1")]
		if in == nil || in.Region != region {
			xmlError(w, &apiError{400, "InvalidInstanceID.NotFound", "The instance ID '" + q.Get("InstanceId.1") + "' does not exist"})
			return
		}
		in.State = "terminated"
		reply("<instancesSet><item><instanceId>" + in.ID + "</instanceId><currentState><code>48</code><name>terminated</name></currentState></item></instancesSet>")
	case "DescribeRegions":
		var b strings.Builder
		b.WriteString("<regionInfo>")
		for _, r := range Regions {
			fmt.Fprintf(&b, "<item><regionName>%s</regionName><regionEndpoint>ec2.%s.amazonaws.com</regionEndpoint></item>", r, r)
		}
		b.WriteString("</regionInfo>")
		reply(b.String())
	case "CreateSecurityGroup":
		name := q.Get("GroupName")
		if f.Groups[region+"/"+name] != nil {
			xmlError(w, &apiError{400, "InvalidGroup.Duplicate", "The security group '" + name + "' already exists"})
			return
		}
		f.Groups[region+"/"+name] = &SecurityGroup{Name: name, Region: region, TCPPorts: map[int]bool{}}
		reply("<return>true</return><groupId>sg-" + name + "</groupId>")
	case "AuthorizeSecurityGroupIngress":
		g := f.Groups[region+"/"+q.Get("GroupName")]
		if g == nil {
			xmlError(w, &apiError{400, "InvalidGroup.NotFound", "The security group '" + q.Get("GroupName") + "' does not exist"})
			return
		}
		for i := 1; q.Get(fmt.Sprintf("IpPermissions.%d.IpProtocol", i)) != ""; i++ {
			from, _ := strconv.Atoi(q.Get(fmt.Sprintf("IpPermissions.%d.FromPort", i)))
			to, _ := strconv.Atoi(q.Get(fmt.Sprintf("IpPermissions.%d.ToPort", i)))
			for p := from; p <= to; p++ {
				g.TCPPorts[p] = true
			}
		}
		reply("<return>true</return>")
	case "DescribeSecurityGroups":
		var b strings.Builder
		b.WriteString("<securityGroupInfo>")
		for i := 1; q.Get(fmt.Sprintf("GroupName.%d", i)) != ""; i++ {
			g := f.Groups[region+"/"+q.Get(fmt.Sprintf("GroupName.%d", i))]
			if g == nil {
				xmlError(w, &apiError{400, "InvalidGroup.NotFound", "The security group '" + q.Get(fmt.Sprintf("GroupName.%d", i)) + "' does not exist in default VPC"})
				return
			}
			fmt.Fprintf(&b, "<item><groupName>%s</groupName><groupId>sg-%s</groupId><ipPermissions>", g.Name, g.Name)
			ports := make([]int, 0, len(g.TCPPorts))
			for p := range g.TCPPorts {
				ports = append(ports, p)
			}
			sort.Ints(ports)
			for _, p := range ports {
				fmt.Fprintf(&b, "<item><ipProtocol>tcp</ipProtocol><fromPort>%d</fromPort><toPort>%d</toPort><ipRanges><item><cidrIp>0.0.0.0/0</cidrIp></item></ipRanges></item>", p, p)
			}
			b.WriteString("</ipPermissions></item>")
		}
		b.WriteString("</securityGroupInfo>")
		reply(b.String())
	default:
		h := actions[action]
		if h == nil {
			xmlError(w, &apiError{400, "InvalidAction", "The action " + action + " is not valid for this web service."})
			return
		}
		inner, aerr := h(f, q, region)
		if aerr != nil {
			xmlError(w, aerr)
			return
		}
		reply(inner)
	}
}

// actions are EC2 Query actions defined in the fake's other files (one file
// per area: volumes, S3-backed images, ...). A handler runs with f.mu held
// and returns the inner XML of the <ActionResponse> element or an error.
var actions = map[string]func(f *Fake, q url.Values, region string) (string, *apiError){}

// tagSet is tags as EC2's DescribeImages lists them, by key.
func tagSet(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "<item><key>%s</key><value>%s</value></item>", xmlEsc(k), xmlEsc(tags[k]))
	}
	return b.String()
}

func instanceXML(in *Instance) string {
	code := map[string]int{"pending": 0, "running": 16, "terminated": 48, "stopping": 64, "stopped": 80}[in.State]
	return fmt.Sprintf("<item><instanceId>%s</instanceId><imageId>%s</imageId><instanceState><code>%d</code><name>%s</name></instanceState><instanceType>%s</instanceType><keyName>%s</keyName><privateIpAddress>10.0.0.%d</privateIpAddress>%s%s</item>",
		in.ID, in.ImageID, code, in.State, xmlEsc(in.Type), xmlEsc(in.KeyName), len(in.ID)%250+2, placementXML(in), tagSetXML(in.Tags))
}

// matchFilters applies DescribeInstances' Filter.N (tag:KEY and
// instance-state-name; values OR-ed, filters AND-ed).
func matchFilters(q url.Values, in *Instance) bool {
	for i := 1; q.Get(fmt.Sprintf("Filter.%d.Name", i)) != ""; i++ {
		name := q.Get(fmt.Sprintf("Filter.%d.Name", i))
		var have string
		switch {
		case strings.HasPrefix(name, "tag:"):
			v, ok := in.Tags[strings.TrimPrefix(name, "tag:")]
			if !ok {
				return false
			}
			have = v
		case name == "instance-state-name":
			have = in.State
		default:
			continue
		}
		ok := false
		for j := 1; q.Get(fmt.Sprintf("Filter.%d.Value.%d", i, j)) != ""; j++ {
			ok = ok || q.Get(fmt.Sprintf("Filter.%d.Value.%d", i, j)) == have
		}
		if !ok {
			return false
		}
	}
	return true
}

// AddImage registers an available AMI (as if made earlier) for tests of
// what consumes images.
func (f *Fake) AddImage(region, id, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Images[id] = &Image{ID: id, Region: region, Name: name, State: "available", Arch: "x86_64", RootDevice: "/dev/xvda", Virt: "hvm", Tags: map[string]string{}}
}

// AddSecurityGroup creates a group with some TCP ports open.
func (f *Fake) AddSecurityGroup(region, name string, ports ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := &SecurityGroup{Name: name, Region: region, TCPPorts: map[int]bool{}}
	for _, p := range ports {
		g.TCPPorts[p] = true
	}
	f.Groups[region+"/"+name] = g
}

// Mu is the lock guarding the fake's state, for tests that poll it.
func (f *Fake) Mu() *sync.Mutex { return &f.mu }
