package ec2

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/conpaas/cps/clouds/register"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/plan"
	"github.com/conpaas/cps/test/ec2fake"
)

// instanceSSH is the SSH server of a fake instance: public key login, the
// "sftp" subsystem, and "exec" of any command (what `sudo -n ...
// sftp-server` would run) also served as SFTP. Its SFTP server maps a path
// to the backing file of the volume the fake has attached at that device
// (ec2fake.AttachedFile), so writing /dev/xvdf over SFTP writes the volume,
// and anything else does not exist, as on the instance.
type instanceSSH struct {
	addr     string
	hostKey  ssh.Signer
	written  atomic.Int64 // bytes written to devices
	mu       sync.Mutex
	execs    []string
	subsys   int
	created  bool // a client asked for O_CREATE
	onWrite  func()
	sudoFail string // exec prints this to stderr and exits 1
}

func startInstanceSSH(t *testing.T, f *ec2fake.Fake, instance string, authorized ssh.PublicKey) *instanceSSH {
	t.Helper()
	_, hk, _ := ed25519.GenerateKey(nil)
	host, err := ssh.NewSignerFromKey(hk)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if bytes.Equal(k.Marshal(), authorized.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("unknown key")
	}}
	cfg.AddHostKey(host)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &instanceSSH{addr: ln.Addr().String(), hostKey: host}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(nc, cfg, f, instance)
		}
	}()
	return s
}

func (s *instanceSSH) serve(nc net.Conn, cfg *ssh.ServerConfig, f *ec2fake.Fake, instance string) {
	defer nc.Close()
	_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			return
		}
		go func() {
			defer ch.Close()
			for req := range creqs {
				var arg struct{ Value string }
				ssh.Unmarshal(req.Payload, &arg)
				switch {
				case req.Type == "subsystem" && arg.Value == "sftp":
					s.mu.Lock()
					s.subsys++
					s.mu.Unlock()
				case req.Type == "exec":
					s.mu.Lock()
					s.execs = append(s.execs, arg.Value)
					s.mu.Unlock()
					if s.sudoFail != "" {
						req.Reply(true, nil)
						fmt.Fprintln(ch.Stderr(), s.sudoFail)
						ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{1}))
						return
					}
				default:
					req.Reply(false, nil)
					continue
				}
				req.Reply(true, nil)
				h := &deviceHandler{s: s, f: f, instance: instance}
				srv := sftp.NewRequestServer(ch, sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h})
				srv.Serve()
				srv.Close()
				ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
				return
			}
		}()
	}
}

type deviceHandler struct {
	s        *instanceSSH
	f        *ec2fake.Fake
	instance string
}

func (h *deviceHandler) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	if r.Pflags().Creat || r.Pflags().Trunc {
		h.s.mu.Lock()
		h.s.created = true
		h.s.mu.Unlock()
	}
	file, err := h.f.AttachedFile(h.instance, r.Filepath)
	if err != nil {
		return nil, os.ErrNotExist // no such device node
	}
	fh, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	return &countingWriter{f: fh, s: h.s}, nil
}

func (h *deviceHandler) Fileread(*sftp.Request) (io.ReaderAt, error) { return nil, os.ErrPermission }
func (h *deviceHandler) Filecmd(*sftp.Request) error                 { return sftp.ErrSSHFxOpUnsupported }
func (h *deviceHandler) Filelist(*sftp.Request) (sftp.ListerAt, error) {
	return nil, sftp.ErrSSHFxOpUnsupported
}

type countingWriter struct {
	f    *os.File
	s    *instanceSSH
	once sync.Once
}

func (w *countingWriter) WriteAt(p []byte, off int64) (int, error) {
	n, err := w.f.WriteAt(p, off)
	w.s.written.Add(int64(n))
	if w.s.onWrite != nil {
		w.once.Do(w.s.onWrite)
	}
	return n, err
}

func (w *countingWriter) Close() error { return w.f.Close() }

// viaFixture is a fake EC2 with a running instance whose SSH server
// accepts the key in keyFile and whose host key is in knownHosts.
type viaFixture struct {
	f          *ec2fake.Fake
	in         *ec2fake.Instance
	srv        *instanceSSH
	keyFile    string
	knownHosts string
}

func newViaFixture(t *testing.T) *viaFixture {
	t.Helper()
	f := ec2fake.Start()
	t.Cleanup(f.Close)
	f.VolumeDir = t.TempDir()
	in := f.AddInstance(ec2fake.Instance{Region: "us-east-1", AZ: "us-east-1c", KeyName: "conpaas", PublicIP: "203.0.113.7"})
	dir := t.TempDir()
	keyFile := writeKey(t, dir, "id_ed25519")
	b, _ := os.ReadFile(keyFile)
	signer, _ := ssh.ParsePrivateKey(b)
	srv := startInstanceSSH(t, f, in.ID, signer.PublicKey())
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, []byte(knownhosts.Line([]string{knownhosts.Normalize(srv.addr)}, srv.hostKey.PublicKey())+"\n"), 0o600)
	return &viaFixture{f: f, in: in, srv: srv, keyFile: keyFile, knownHosts: kh}
}

func writeKey(t *testing.T, dir, name string) string {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(nil)
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (x *viaFixture) target() *EBS {
	tg := target(x.f, x.f.Secret)
	tg.SSH = SSH{Addr: x.srv.addr, KeyFile: x.keyFile, KnownHosts: x.knownHosts}
	return tg
}

func TestRegisterViaInstance(t *testing.T) {
	for _, user := range []string{"", "root"} {
		t.Run("user="+user, func(t *testing.T) {
			x := newViaFixture(t)
			size := int64(200<<20 + 5000)
			path, art := image(t, size)
			cat := filepath.Join(t.TempDir(), "catalogue.json")
			reg := plan.Register{Name: "aws", Target: plan.TargetEC2EBS, Region: "us-east-1", Method: MethodViaInstance, Instance: x.in.ID,
				SSHUser: user, Tags: map[string]string{"project": "conpaas"}}
			regs, err := register.PrepareAndRun(context.Background(), x.target(), reg, art, register.Options{}, cat)
			if err != nil {
				t.Fatal(err)
			}
			if len(regs) != 1 || regs[0].ImageID == "" || regs[0].SnapshotID == "" || regs[0].Region != "us-east-1" {
				t.Fatalf("registrations %+v", regs)
			}
			want, _ := os.ReadFile(path)
			if got := x.f.SnapshotBytes(regs[0].SnapshotID, size); !bytes.Equal(got, want) {
				t.Error("snapshot content differs from the image")
			}
			img := x.f.Images[regs[0].ImageID]
			if img == nil || img.RootDevice != "/dev/xvda" || img.SnapshotID != regs[0].SnapshotID || img.BootMode != "uefi-preferred" ||
				img.Tags["project"] != "conpaas" || img.Tags["conpaas:md5"] != art.Sums.MD5 {
				t.Errorf("AMI %+v", img)
			}
			if s := x.f.Snapshots[regs[0].SnapshotID]; s == nil || s.VolumeGiB != 1 || s.Tags["conpaas:md5"] != art.Sums.MD5 {
				t.Errorf("snapshot %+v", s)
			}
			// The scratch volume is gone, with its backing file.
			if len(x.f.Volumes) != 0 || x.f.Requests["CreateVolume"] != 1 || x.f.Requests["DeleteVolume"] != 1 {
				t.Errorf("volumes left %v, requests %v", x.f.Volumes, x.f.Requests)
			}
			if ents, _ := os.ReadDir(x.f.VolumeDir); len(ents) != 0 {
				t.Errorf("backing files left: %v", ents)
			}
			// Only the data extents went over SFTP.
			fh, _ := os.Open(path)
			ext, _ := sparse.DataExtents(fh)
			fh.Close()
			data := sparse.DataBytes(ext)
			if n := x.srv.written.Load(); n != data || n >= size || n < 2*700<<10+1000 {
				t.Errorf("%d bytes written over SFTP; data extents %d, image %d", n, data, size)
			}
			x.srv.mu.Lock()
			execs, subsys, created := x.srv.execs, x.srv.subsys, x.srv.created
			x.srv.mu.Unlock()
			if created {
				t.Error("the device was opened with O_CREATE or O_TRUNC")
			}
			if user == "root" && (subsys != 1 || len(execs) != 0) || user == "" && (subsys != 0 || len(execs) != 1 || !strings.HasPrefix(execs[0], "sudo -n ")) {
				t.Errorf("sftp started by subsystem %d times, exec %q", subsys, execs)
			}
			c, _ := catalogue.Load(cat)
			if a := c.Find("conpaas"); a == nil || len(a.Registered) != 1 || a.Registered[0].ImageID != regs[0].ImageID || a.Registered[0].SnapshotID != regs[0].SnapshotID {
				t.Errorf("catalogue %+v", a)
			}
		})
	}
}

func TestRegisterViaInstanceFailures(t *testing.T) {
	_, art := image(t, 64<<20)
	cases := []struct {
		name  string
		setup func(x *viaFixture, reg *plan.Register, tg *EBS, opt *register.Options)
		want  string
		// volume: whether the run got as far as creating the volume, and
		// (kept) whether it must still exist afterwards.
		volume, kept bool
	}{
		{"missing instance id", func(x *viaFixture, reg *plan.Register, tg *EBS, opt *register.Options) { reg.Instance = "" },
			"needs the id of a running EC2 instance", false, false},
		{"instance not found", func(x *viaFixture, reg *plan.Register, tg *EBS, opt *register.Options) {
			reg.Instance = "i-0123456789abcdef0"
		},
			"instance i-0123456789abcdef0 not found in us-east-1", false, false},
		{"instance in another region", func(x *viaFixture, reg *plan.Register, tg *EBS, opt *register.Options) { reg.Region = "eu-west-1" },
			"not found in eu-west-1", false, false},
		{"instance stopped", func(x *viaFixture, reg *plan.Register, tg *EBS, opt *register.Options) { x.in.State = "stopped" },
			"is stopped, not running", false, false},
		{"wrong key", func(x *viaFixture, reg *plan.Register, tg *EBS, opt *register.Options) {
			tg.SSH.KeyFile = writeKey(t, t.TempDir(), "other")
		}, "SSH login as admin@127.0.0.1", false, false},
		{"host key mismatch", func(x *viaFixture, reg *plan.Register, tg *EBS, opt *register.Options) {
			_, other, _ := ed25519.GenerateKey(nil)
			s, _ := ssh.NewSignerFromKey(other)
			os.WriteFile(x.knownHosts, []byte(knownhosts.Line([]string{knownhosts.Normalize(x.srv.addr)}, s.PublicKey())+"\n"), 0o600)
		}, "does not match the one in", false, false},
		{"host key unknown", func(x *viaFixture, reg *plan.Register, tg *EBS, opt *register.Options) {
			os.WriteFile(x.knownHosts, nil, 0o600)
		},
			"is not in", false, false},
		{"sudo wants a password", func(x *viaFixture, reg *plan.Register, tg *EBS, opt *register.Options) {
			x.srv.sudoFail = "sudo: a password is required"
		}, "asks for a password", false, false},
		{"no guest device", func(x *viaFixture, reg *plan.Register, tg *EBS, opt *register.Options) {
			reg.GuestDevice = "/dev/nvme1n1"
			tg.DeviceTimeout = time.Second
		}, "did not appear on the instance as /dev/nvme1n1", true, false},
		{"no guest device, keep on error", func(x *viaFixture, reg *plan.Register, tg *EBS, opt *register.Options) {
			reg.GuestDevice = "/dev/nvme1n1"
			tg.DeviceTimeout = time.Second
			opt.KeepOnError = true
		}, "did not appear", true, true},
		{"device in use", func(x *viaFixture, reg *plan.Register, tg *EBS, opt *register.Options) { reg.Device = "/dev/sda1" },
			"Attachment point /dev/sda1 is already in use", true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := newViaFixture(t)
			tg := x.target()
			reg := plan.Register{Target: plan.TargetEC2EBS, Region: "us-east-1", Method: MethodViaInstance, Instance: x.in.ID}
			var opt register.Options
			tc.setup(x, &reg, tg, &opt)
			_, err := register.PrepareAndRun(context.Background(), tg, reg, art, opt, "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			t.Log(err)
			if got := x.f.Requests["CreateVolume"] == 1; got != tc.volume {
				t.Errorf("CreateVolume called: %v, want %v", got, tc.volume)
			}
			if tc.kept {
				if len(x.f.Volumes) != 1 {
					t.Errorf("KeepOnError kept %d volumes", len(x.f.Volumes))
				}
			} else if len(x.f.Volumes) != 0 {
				t.Errorf("cleanup left volumes %v", x.f.Volumes)
			}
			if len(x.f.Snapshots) != 0 || len(x.f.Images) != 0 {
				t.Errorf("left %d snapshots, %d images", len(x.f.Snapshots), len(x.f.Images))
			}
		})
	}
}

// Ctrl-C in the middle of the SFTP writes: the connection is cut, the
// volume detached and deleted.
func TestRegisterViaInstanceCanceled(t *testing.T) {
	x := newViaFixture(t)
	_, art := image(t, 200<<20)
	ctx, cancel := context.WithCancel(context.Background())
	x.srv.onWrite = cancel
	tg := x.target()
	_, err := register.PrepareAndRun(ctx, tg, plan.Register{Region: "us-east-1", Method: MethodViaInstance, Instance: x.in.ID}, art, register.Options{}, "")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if len(x.f.Volumes) != 0 || x.f.Requests["DetachVolume"] != 1 || len(x.f.Snapshots) != 0 {
		t.Errorf("cancel left volumes %v, snapshots %d (requests %v)", x.f.Volumes, len(x.f.Snapshots), x.f.Requests)
	}
}
