package ec2

// The "via-instance" method, the ConPaaS guide's classic way of making an
// EBS AMI (run on an EC2 instance as root, dd the image onto an attached
// volume, snapshot it), driven from any machine:
//
//  1. DescribeInstances: the instance must be running; its availability
//     zone and address.
//  2. SSH to it (key, host key checked against known_hosts) and start an
//     SFTP server able to write block devices: the "sftp" subsystem when
//     logging in as root, else sftp-server under `sudo -n` (cloud images
//     log in as a sudoer, and only root may write /dev/xvdf). Connecting
//     first means a wrong key or host key fails before anything is created.
//  3. CreateVolume (gp3, the image's size rounded up to GiB, in the
//     instance's zone, tagged), wait until available; AttachVolume at
//     Device, wait until attached.
//  4. Open the guest device over SFTP (write-only, never created: a typo
//     must not make a file in /dev) and write only the image's data extents
//     at their offsets (a new volume reads as zeros elsewhere), each as one
//     pipelined stream of concurrent 64 KiB writes; fsync@openssh.com when
//     the server has it, then close (the last close of a block device also
//     writes its dirty pages back).
//  5. DetachVolume, wait until available; CreateSnapshot, wait until
//     completed; DeleteVolume. The snapshot then goes through the same
//     RegisterImage / tags / copies as the direct method (publish).
//
// The volume, the snapshot and the AMI are recorded in created as they are
// made, so a failure or Ctrl-C detaches and deletes the volume too, unless
// KeepOnError.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/conpaas/cps/images/sparse"
	"github.com/conpaas/cps/internal/progress"
)

// SSH is how the via-instance method reaches the instance. The register
// block's ssh_user, ssh_key and ssh_known_hosts win over these.
type SSH struct {
	// Addr is host[:port] to connect to instead of the instance's public
	// (else private) address on port 22: a tunnel, a bastion's forward.
	Addr string
	// User logs in (default "admin", the Debian AMIs' user).
	User string
	// KeyFile is the private key of the instance's key pair (default: the
	// keys in ssh-agent and ~/.ssh/id_ed25519, id_ecdsa, id_rsa).
	KeyFile string
	// KnownHosts is the file the host key must be in (default
	// ~/.ssh/known_hosts).
	KnownHosts string
	// InsecureIgnoreHostKey accepts any host key.
	InsecureIgnoreHostKey bool
	// SFTPCommand runs the SFTP server on the instance instead of the
	// default (the "sftp" subsystem for root, else sftpSudo).
	SFTPCommand string
	// Timeout bounds connecting and the SSH handshake (default 30s).
	Timeout time.Duration
}

// sftpSudo runs the distribution's sftp-server as root, without a password
// prompt (which could not be answered: stdin is the SFTP stream).
const sftpSudo = `sudo -n sh -c 'for p in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server /usr/lib/ssh/sftp-server /usr/libexec/sftp-server; do [ -x "$p" ] && exec "$p"; done; echo "no sftp-server found on the instance" >&2; exit 127'`

// SFTP tuning: 64 KiB writes (OpenSSH's sftp-server takes messages up to
// 256 KiB), up to 64 in flight per stream.
const (
	sftpPacket   = 64 << 10
	sftpInFlight = 64
)

func first(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// waitDelays are the waiters' polling bounds.
const (
	waitMin = 50 * time.Millisecond
	waitMax = 15 * time.Second
)

func (t *EBS) viaInstance(ctx context.Context, r *amiRun, img *os.File, size int64) (string, error) {
	c, reg, art, name, done := r.ec2, &t.set, r.art, r.name, r.done[r.set.Region]
	in, err := t.findInstance(ctx, c, reg.Region, reg.Instance)
	if err != nil {
		return "", err
	}
	az := aws.ToString(in.Placement.AvailabilityZone)
	ext, err := sparse.DataExtents(img)
	if err != nil {
		return "", err
	}
	rem, err := t.dial(ctx, reg, in)
	if err != nil {
		return "", err
	}
	defer rem.Close()

	// The scratch volume.
	gib := (size + 1<<30 - 1) >> 30
	device := first(reg.Device, "/dev/xvdf")
	tags := []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String("cpsimage scratch for " + name)},
		{Key: aws.String("conpaas:name"), Value: aws.String(art.Name)}, {Key: aws.String("conpaas:md5"), Value: aws.String(art.Sums.MD5)}}
	cv, err := c.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(az), Size: aws.Int32(int32(gib)),
		VolumeType: ec2types.VolumeTypeGp3, TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeVolume, Tags: tags}}})
	if err != nil {
		return "", fmt.Errorf("CreateVolume in %s: %w", az, explain(err))
	}
	vol := aws.ToString(cv.VolumeId)
	done.volumes = append(done.volumes, vol)
	progress.Logf("ec2-ebs: %s: scratch volume %s (%d GiB) for %s", az, vol, gib, reg.Instance)
	if err := ec2.NewVolumeAvailableWaiter(c, func(o *ec2.VolumeAvailableWaiterOptions) { o.MinDelay, o.MaxDelay = waitMin, waitMax }).
		Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}}, 10*time.Minute); err != nil {
		return "", fmt.Errorf("waiting for volume %s to be available: %w", vol, explain(err))
	}
	if _, err := c.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(reg.Instance), Device: aws.String(device)}); err != nil {
		return "", fmt.Errorf("AttachVolume %s to %s at %s: %w", vol, reg.Instance, device, explain(err))
	}
	// In use is not enough: the attachment itself must be "attached".
	if err := ec2.NewVolumeInUseWaiter(c, func(o *ec2.VolumeInUseWaiterOptions) {
		o.MinDelay, o.MaxDelay = waitMin, waitMax
		o.Retryable = attachedRetryable
	}).Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}}, 10*time.Minute); err != nil {
		return "", fmt.Errorf("waiting for volume %s to be attached to %s: %w", vol, reg.Instance, explain(err))
	}

	// The bytes.
	paths := []string{reg.GuestDevice}
	if paths[0] == "" {
		paths = []string{device, "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_" + strings.ReplaceAll(vol, "-", "")}
	}
	if err := t.write(ctx, rem, paths, img, ext, vol); err != nil {
		return "", err
	}
	rem.Close()

	// The snapshot.
	if err := detach(ctx, c, vol); err != nil {
		return "", err
	}
	cs, err := c.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{VolumeId: aws.String(vol), Description: aws.String(name),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSnapshot,
			Tags: []ec2types.Tag{{Key: aws.String("conpaas:md5"), Value: aws.String(art.Sums.MD5)}}}}})
	if err != nil {
		return "", fmt.Errorf("CreateSnapshot of %s: %w", vol, explain(err))
	}
	snap := aws.ToString(cs.SnapshotId)
	done.snapshots = append(done.snapshots, snap)
	progress.Logf("ec2-ebs: %s: snapshot %s of %s started", reg.Region, snap, vol)
	if err := ec2.NewSnapshotCompletedWaiter(c, func(o *ec2.SnapshotCompletedWaiterOptions) { o.MinDelay, o.MaxDelay = waitMin, waitMax }).
		Wait(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{snap}}, 4*time.Hour); err != nil {
		return "", fmt.Errorf("waiting for snapshot %s to complete: %w", snap, explain(err))
	}
	if _, err := c.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(vol)}); err != nil {
		// The snapshot is what counts: keep going, say what is left.
		progress.Logf("ec2-ebs: warning: could not delete the scratch volume %s (delete it by hand): %v", vol, explain(err))
	} else {
		done.volumes = slices.DeleteFunc(done.volumes, func(v string) bool { return v == vol })
	}
	return snap, nil
}

// findInstance returns the instance, which must be running (a pending one
// is waited for).
func (t *EBS) findInstance(ctx context.Context, c *ec2.Client, region, id string) (ec2types.Instance, error) {
	describe := func() (ec2types.Instance, error) {
		out, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
		var ae smithy.APIError
		if errors.As(err, &ae) && strings.HasPrefix(ae.ErrorCode(), "InvalidInstanceID.") {
			return ec2types.Instance{}, fmt.Errorf("instance %s not found in %s: check the instance id and the region (instances belong to one region)", id, region)
		}
		if err != nil {
			return ec2types.Instance{}, fmt.Errorf("DescribeInstances %s: %w", id, explain(err))
		}
		for _, r := range out.Reservations {
			for _, in := range r.Instances {
				if aws.ToString(in.InstanceId) == id {
					return in, nil
				}
			}
		}
		return ec2types.Instance{}, fmt.Errorf("instance %s not found in %s: check the instance id and the region (instances belong to one region)", id, region)
	}
	in, err := describe()
	if err != nil {
		return in, err
	}
	if in.State != nil && in.State.Name == ec2types.InstanceStateNamePending {
		progress.Logf("ec2-ebs: waiting for instance %s to be running", id)
		w := ec2.NewInstanceRunningWaiter(c, func(o *ec2.InstanceRunningWaiterOptions) { o.MinDelay, o.MaxDelay = waitMin, waitMax })
		if err := w.Wait(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}}, 10*time.Minute); err != nil {
			return in, fmt.Errorf("waiting for instance %s to be running: %w", id, explain(err))
		}
		if in, err = describe(); err != nil {
			return in, err
		}
	}
	if in.State == nil || in.State.Name != ec2types.InstanceStateNameRunning {
		state := "in an unknown state"
		if in.State != nil {
			state = string(in.State.Name)
		}
		return in, fmt.Errorf("instance %s is %s, not running: start it (aws ec2 start-instances --instance-ids %s) or name a running one", id, state, id)
	}
	if in.Placement == nil || aws.ToString(in.Placement.AvailabilityZone) == "" {
		return in, fmt.Errorf("DescribeInstances %s: no availability zone in the answer", id)
	}
	return in, nil
}

// attachedRetryable ends the in-use waiter once the attachment is
// "attached" (the volume is "in-use" from the moment it starts attaching).
func attachedRetryable(ctx context.Context, in *ec2.DescribeVolumesInput, out *ec2.DescribeVolumesOutput, err error) (bool, error) {
	if err != nil {
		return false, err
	}
	for _, v := range out.Volumes {
		if v.State == ec2types.VolumeStateDeleted || v.State == ec2types.VolumeStateError {
			return false, fmt.Errorf("volume %s is %s", aws.ToString(v.VolumeId), v.State)
		}
		for _, a := range v.Attachments {
			if a.State == ec2types.VolumeAttachmentStateAttached {
				return false, nil
			}
		}
	}
	return true, nil
}

// detach detaches a volume if it is attached and waits until it is
// available.
func detach(ctx context.Context, c *ec2.Client, vol string) error {
	out, err := c.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}})
	if err != nil {
		return fmt.Errorf("DescribeVolumes %s: %w", vol, explain(err))
	}
	for _, v := range out.Volumes {
		for _, a := range v.Attachments {
			if a.State == ec2types.VolumeAttachmentStateAttached || a.State == ec2types.VolumeAttachmentStateAttaching {
				if _, err := c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(vol)}); err != nil {
					return fmt.Errorf("DetachVolume %s: %w", vol, explain(err))
				}
			}
		}
	}
	w := ec2.NewVolumeAvailableWaiter(c, func(o *ec2.VolumeAvailableWaiterOptions) { o.MinDelay, o.MaxDelay = waitMin, waitMax })
	if err := w.Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}}, 10*time.Minute); err != nil {
		return fmt.Errorf("waiting for volume %s to be detached: %w", vol, explain(err))
	}
	return nil
}

// removeVolume detaches (if need be) and deletes a scratch volume; one
// already gone is fine.
func (t *EBS) removeVolume(ctx context.Context, c *ec2.Client, vol string) error {
	err := detach(ctx, c, vol)
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "InvalidVolume.NotFound" {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := c.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(vol)}); err != nil {
		return explain(err)
	}
	return nil
}

// remote is an SSH connection with an SFTP session on it.
type remote struct {
	conn  *ssh.Client
	sftp  *sftp.Client
	sess  *ssh.Session // nil with the sftp subsystem
	stop  func() bool
	once  sync.Once
	where string // user@host, for messages
}

func (r *remote) Close() {
	r.once.Do(func() {
		r.sftp.Close()
		if r.sess != nil {
			r.sess.Close()
		}
		r.conn.Close()
		r.stop()
	})
}

// lockedBuffer collects a session's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.b.String())
}

// dial logs in to the instance and starts SFTP.
func (t *EBS) dial(ctx context.Context, reg *EBSSettings, in ec2types.Instance) (*remote, error) {
	user := first(reg.SSHUser, t.SSH.User, "admin")
	addr := first(reg.SSHAddr, t.SSH.Addr)
	if addr == "" {
		addr = first(aws.ToString(in.PublicIpAddress), aws.ToString(in.PrivateIpAddress))
		if addr == "" {
			return nil, fmt.Errorf("instance %s has no IP address to connect to over SSH", reg.Instance)
		}
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "22")
	}
	timeout := t.SSH.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	where := user + "@" + addr
	auth, keyDesc, closeAgent, err := t.authMethods(reg)
	if err != nil {
		return nil, err
	}
	defer closeAgent()
	check, algos, khFile, err := t.hostKeyCheck(reg, addr)
	if err != nil {
		return nil, err
	}
	var keyErr error
	cfg := &ssh.ClientConfig{User: user, Auth: auth, HostKeyAlgorithms: algos, Timeout: timeout,
		HostKeyCallback: func(h string, a net.Addr, k ssh.PublicKey) error {
			keyErr = check(h, a, k)
			return keyErr
		}}
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to %s (instance %s) over SSH: %v; check that its security group lets this machine in on port 22", addr, reg.Instance, err)
	}
	nc.SetDeadline(time.Now().Add(timeout))
	stopHandshake := context.AfterFunc(ctx, func() { nc.Close() })
	cc, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	stopHandshake()
	if err != nil {
		nc.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		f := sshFailure{where: where, addr: addr, knownHosts: khFile, keyDesc: keyDesc, keyName: aws.ToString(in.KeyName), pinned: len(algos) > 0}
		return nil, f.explain(err, keyErr)
	}
	nc.SetDeadline(time.Time{})
	conn := ssh.NewClient(cc, chans, reqs)
	cancelOnCtx := context.AfterFunc(ctx, func() { conn.Close() })
	// Keepalives: the connection idles while the volume is created and
	// attached, which NAT gateways and firewalls may take for a dead one.
	quit := make(chan struct{})
	go func() {
		tick := time.NewTicker(30 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				conn.SendRequest("keepalive@openssh.com", true, nil)
			}
		}
	}()
	r := &remote{conn: conn, where: where, stop: func() bool { close(quit); return cancelOnCtx() }}
	opts := []sftp.ClientOption{sftp.UseConcurrentWrites(true), sftp.MaxPacketUnchecked(sftpPacket), sftp.MaxConcurrentRequestsPerFile(sftpInFlight)}
	cmd := t.SSH.SFTPCommand
	if cmd == "" && user != "root" {
		cmd = sftpSudo
	}
	if cmd == "" {
		r.sftp, err = sftp.NewClient(conn, opts...)
		if err != nil {
			conn.Close()
			r.stop()
			return nil, fmt.Errorf("SFTP on %s: %v; the SSH server must offer the sftp subsystem", where, err)
		}
		return r, nil
	}
	sess, err := conn.NewSession()
	if err != nil {
		conn.Close()
		r.stop()
		return nil, fmt.Errorf("SSH session on %s: %w", where, err)
	}
	var stderr lockedBuffer
	sess.Stderr = &stderr
	stdin, err1 := sess.StdinPipe()
	stdout, err2 := sess.StdoutPipe()
	if err := errors.Join(err1, err2, sess.Start(cmd)); err != nil {
		conn.Close()
		r.stop()
		return nil, fmt.Errorf("starting sftp-server on %s: %w", where, err)
	}
	r.sess = sess
	r.sftp, err = sftp.NewClientPipe(stdout, stdin, opts...)
	if err != nil {
		// Let the command finish writing why it failed.
		waited := make(chan struct{})
		go func() { sess.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(5 * time.Second):
		}
		msg := stderr.String()
		conn.Close()
		r.stop()
		switch {
		case strings.Contains(msg, "password is required") || strings.Contains(msg, "a terminal is required"):
			return nil, fmt.Errorf("sudo on %s asks for a password: the SSH user must be able to sudo without one (as admin on Debian AMIs), or log in as root (ssh_user / -ssh-user root)", where)
		case msg != "":
			return nil, fmt.Errorf("starting sftp-server as root on %s failed: %s", where, msg)
		}
		return nil, fmt.Errorf("starting sftp-server as root on %s: %v", where, err)
	}
	return r, nil
}

// sshFailure is what explains a failed handshake: who logged in where,
// the known_hosts file, the keys tried, the instance's key pair, and
// whether the host key algorithms were pinned to the known ones.
type sshFailure struct {
	where, addr, knownHosts, keyDesc, keyName string
	pinned                                    bool
}

// explain turns a failed handshake into what to do.
func (f sshFailure) explain(err, keyErr error) error {
	where, addr, khFile, keyDesc, keyName, pinned := f.where, f.addr, f.knownHosts, f.keyDesc, f.keyName, f.pinned
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(keyErr, &ke) && len(ke.Want) > 0,
		pinned && strings.Contains(err.Error(), "no common algorithm for host key"):
		return fmt.Errorf("the host key of %s does not match the one in %s: if the instance was replaced, remove the old entry (ssh-keygen -R %s -f %s) and accept the new key once with ssh; otherwise the connection may be intercepted", addr, khFile, knownhosts.Normalize(addr), khFile)
	case errors.As(keyErr, &ke):
		return fmt.Errorf("the host key of %s is not in %s: connect once with ssh to accept it (compare its fingerprint with the instance's console output), or use -ssh-insecure-ignore-host-key", addr, khFile)
	case errors.As(keyErr, &re):
		return fmt.Errorf("the host key of %s is marked revoked in %s", addr, khFile)
	case strings.Contains(err.Error(), "unable to authenticate"):
		pair := ""
		if keyName != "" {
			pair = fmt.Sprintf(" %q", keyName)
		}
		return fmt.Errorf("SSH login as %s was refused (tried %s): check the user (ssh_user / -ssh-user; Debian AMIs: admin, Ubuntu: ubuntu, Amazon Linux: ec2-user) and that the key (ssh_key / -ssh-key) is the private key of the instance's key pair%s", where, keyDesc, pair)
	}
	return fmt.Errorf("SSH to %s: %w", where, err)
}

// authMethods are the keys to offer: ssh_key, or ssh-agent's keys and the
// default key files.
func (t *EBS) authMethods(reg *EBSSettings) ([]ssh.AuthMethod, string, func(), error) {
	nop := func() {}
	if p := first(reg.SSHKey, t.SSH.KeyFile); p != "" {
		s, err := loadKey(p)
		if err != nil {
			return nil, "", nop, err
		}
		return []ssh.AuthMethod{ssh.PublicKeys(s)}, p, nop, nil
	}
	var (
		methods []ssh.AuthMethod
		desc    []string
		closer  = nop
	)
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if ac, err := net.Dial("unix", sock); err == nil {
			methods = append(methods, ssh.PublicKeysCallback(agent.NewClient(ac).Signers))
			desc = append(desc, "the keys in ssh-agent")
			closer = func() { ac.Close() }
		}
	}
	var signers []ssh.Signer
	if home, err := os.UserHomeDir(); err == nil {
		for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			p := filepath.Join(home, ".ssh", n)
			if s, err := loadKey(p); err == nil {
				signers = append(signers, s)
				desc = append(desc, p)
			}
		}
	}
	if len(signers) > 0 {
		methods = append(methods, ssh.PublicKeys(signers...))
	}
	if len(methods) == 0 {
		return nil, "", nop, errors.New("no SSH key to log in to the instance with: set ssh_key / -ssh-key to the private key of its key pair, or load that key into ssh-agent")
	}
	return methods, strings.Join(desc, ", "), closer, nil
}

func loadKey(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("SSH key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	var pe *ssh.PassphraseMissingError
	if errors.As(err, &pe) {
		return nil, fmt.Errorf("the SSH key %s is protected by a passphrase: load it into ssh-agent (ssh-add %s) and leave ssh_key / -ssh-key unset", path, path)
	}
	if err != nil {
		return nil, fmt.Errorf("SSH key %s: %w", path, err)
	}
	return s, nil
}

// hostKeyCheck returns the host key callback, the host key algorithms to
// ask for (those of the keys known_hosts has for addr, so that a server
// offering several key types is checked against the one recorded instead of
// failing as a mismatch) and the known_hosts file used.
func (t *EBS) hostKeyCheck(reg *EBSSettings, addr string) (ssh.HostKeyCallback, []string, string, error) {
	if reg.SSHInsecure || t.SSH.InsecureIgnoreHostKey {
		progress.Logf("ec2-ebs: warning: not checking the host key of %s", addr)
		return ssh.InsecureIgnoreHostKey(), nil, "", nil
	}
	file := first(reg.SSHKnownHosts, t.SSH.KnownHosts)
	if file == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, nil, "", fmt.Errorf("no known_hosts file: %w", err)
		}
		file = filepath.Join(home, ".ssh", "known_hosts")
	}
	cb, err := knownhosts.New(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, file, fmt.Errorf("known_hosts file %s does not exist: connect to the instance once with ssh to accept its host key, or use -ssh-insecure-ignore-host-key", file)
	}
	if err != nil {
		return nil, nil, file, fmt.Errorf("known_hosts: %w", err)
	}
	// Ask with a key no host has: the error lists the keys it does have.
	pub, _, _ := ed25519.GenerateKey(nil)
	probe, _ := ssh.NewPublicKey(pub)
	tcp, _ := net.ResolveTCPAddr("tcp", addr)
	var algos []string
	var ke *knownhosts.KeyError
	if err := cb(addr, tcp, probe); errors.As(err, &ke) {
		for _, k := range ke.Want {
			switch typ := k.Key.Type(); typ {
			case ssh.KeyAlgoRSA:
				algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
			default:
				algos = append(algos, typ)
			}
		}
	}
	slices.Sort(algos)
	return cb, slices.Compact(algos), file, nil
}

// write writes the image's data extents to the first of paths that exists
// on the instance.
func (t *EBS) write(ctx context.Context, r *remote, paths []string, img *os.File, ext []sparse.Extent, vol string) error {
	timeout := t.DeviceTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	var (
		dev  *sftp.File
		path string
	)
	deadline := time.Now().Add(timeout)
	for dev == nil {
		for _, p := range paths {
			f, err := r.sftp.OpenFile(p, os.O_WRONLY) // never O_CREATE: no regular file in /dev
			if err == nil {
				dev, path = f, p
				break
			}
			if errors.Is(err, os.ErrPermission) {
				return fmt.Errorf("%s may not write %s: log in as root or let sftp-server run under sudo (the default for other users)", r.where, p)
			}
			if !errors.Is(err, os.ErrNotExist) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("open %s on %s: %w", p, r.where, err)
			}
		}
		if dev != nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("volume %s did not appear on the instance as %s within %v: on Nitro instances it is an NVMe disk; set guest_device (-guest-device) to its path there, e.g. /dev/nvme1n1", vol, strings.Join(paths, " or "), timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	total := sparse.DataBytes(ext)
	progress.Logf("ec2-ebs: writing %.1f MiB of data to %s:%s (%s)", float64(total)/(1<<20), r.where, path, vol)
	bar := progress.New("sftp "+vol, total)
	fail := func(err error) error {
		bar.Finish()
		dev.Close()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("writing %s on %s: %w", path, r.where, err)
	}
	for _, e := range ext {
		if _, err := dev.Seek(e.Off, io.SeekStart); err != nil {
			return fail(err)
		}
		n, err := dev.ReadFromWithConcurrency(io.TeeReader(io.NewSectionReader(img, e.Off, e.Len), bar), sftpInFlight)
		if err != nil {
			return fail(err)
		}
		if n != e.Len {
			return fail(fmt.Errorf("wrote %d of the %d bytes at %d", n, e.Len, e.Off))
		}
	}
	bar.Finish()
	if v, ok := r.sftp.HasExtension("fsync@openssh.com"); ok && v == "1" {
		if err := dev.Sync(); err != nil {
			return fail(fmt.Errorf("fsync: %w", err))
		}
	}
	// Without fsync@openssh.com, closing the device (its last open file
	// descriptor) writes its dirty pages back before the server answers.
	if err := dev.Close(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("closing %s on %s: %w", path, r.where, err)
	}
	return nil
}
