package s3server

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/conpaas/cps/images/sparse"
)

func client(endpoint, ak, sk string) *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(ak, sk, ""),
	})
}

// TestMultipartSparse uploads a sparse image in 5 MiB parts with SHA-256
// part checksums through the S3 manager, streamed by the sparse reader, and
// checks the object's bytes and checksums; then checks the server enforces
// signatures and Content-MD5 (so passing tests mean something).
func TestMultipartSparse(t *testing.T) {
	ep, ak, sk := Start(t)
	ctx := context.Background()
	c := client(ep, ak, sk)
	bucket := "cps-images"
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}

	const mib = 1 << 20
	p := filepath.Join(t.TempDir(), "conpaas.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(23*mib + 4321); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 7 * mib, 16*mib + 99} {
		b := make([]byte, mib)
		rand.Read(b)
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	r, err := sparse.NewReader(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	tm := transfermanager.New(c, func(o *transfermanager.Options) { o.PartSizeBytes = 5 * mib; o.Concurrency = 3 })
	res, err := tm.UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: aws.String(bucket), Key: aws.String("conpaas.img"),
		Body: r, ChecksumAlgorithm: tmtypes.ChecksumAlgorithmSha256})
	if err != nil {
		t.Fatal(err)
	}
	// A multipart object's ETag ends in -N, its number of parts.
	if etag := strings.Trim(aws.ToString(res.ETag), `"`); !strings.HasSuffix(etag, "-5") {
		t.Errorf("ETag %s, want 5 parts (23 MiB in 5 MiB parts)", etag)
	}
	// The multipart checksum is the SHA-256 of the parts' SHA-256 digests, "-N".
	agg := sha256.New()
	for i := 0; i < len(want); i += 5 * mib {
		s := sha256.Sum256(want[i:min(i+5*mib, len(want))])
		agg.Write(s[:])
	}
	wantSum := base64.StdEncoding.EncodeToString(agg.Sum(nil))
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("conpaas.img"),
		ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt64(head.ContentLength) != int64(len(want)) {
		t.Errorf("object size %d, want %d", aws.ToInt64(head.ContentLength), len(want))
	}
	if got := aws.ToString(head.ChecksumSHA256); got != "" && strings.Split(got, "-")[0] != wantSum {
		t.Errorf("object checksum %s, want %s-5", got, wantSum)
	}
	obj, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("conpaas.img")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj.Body)
	obj.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("downloaded object differs from the image")
	}

	cases := []struct {
		name string
		c    *s3.Client
		md5  string
		code string
	}{
		{"good-content-md5", c, b64md5([]byte("hello")), ""},
		{"bad-content-md5", c, b64md5([]byte("other")), "BadDigest"},
		{"bad-secret", client(ep, ak, sk+"x"), "", "SignatureDoesNotMatch"},
		{"unknown-key", client(ep, "NOPE"+ak, sk), "", "InvalidAccessKeyId|XAdminUserNotFound"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(tc.name), Body: bytes.NewReader([]byte("hello"))}
			if tc.md5 != "" {
				in.ContentMD5 = aws.String(tc.md5)
			}
			_, err := tc.c.PutObject(ctx, in)
			var ae smithy.APIError
			switch {
			case tc.code == "" && err != nil:
				t.Fatalf("put: %v", err)
			case tc.code != "" && err == nil:
				t.Fatalf("put succeeded, want %s", tc.code)
			case tc.code != "" && (!errors.As(err, &ae) || !oneOf(ae.ErrorCode(), tc.code)):
				t.Fatalf("put: %v, want %s", err, tc.code)
			}
		})
	}
}

func b64md5(b []byte) string {
	s := md5.Sum(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

// oneOf reports whether code is one of the |-separated codes; versitygw
// answers an unknown access key with its own XAdminUserNotFound.
func oneOf(code, codes string) bool {
	for _, c := range strings.Split(codes, "|") {
		if c == code {
			return true
		}
	}
	return false
}
