// Package fs makes the filesystems that go inside a disk image's partitions
// (ext4, FAT32, swap) from a directory tree, without mounting anything: each
// filesystem is written to its own sparse file or straight into the image
// file at the partition's offset.
package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrNoSpace is wrapped by MakeExt4 when the tree does not fit.
var ErrNoSpace = errors.New("filesystem too small for its content")

// mke2fsConf pins the ext4 feature set so an image does not depend on the
// build host's /etc/mke2fs.conf. It is Debian 12's ext4 set: GRUB 2.06 and
// the bookworm kernel read it (orphan_file, which newer e2fsprogs enable,
// is left out on purpose: GRUB 2.06 refuses it).
const mke2fsConf = `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384
[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
`

// MakeExt4 makes an ext4 filesystem of size bytes at off in dst holding the
// tree srcDir (owners, modes, xattrs, hard links and symlinks kept, as
// mke2fs -d does). mke2fs writes only metadata and file data; dst must read
// as zeros in the range already (a fresh sparse image).
//
// When epoch > 0 the result is reproducible: the filesystem's own times
// come from epoch, and every inode's atime, ctime and crtime are set to
// epoch and its mtime clamped to it, since mke2fs copies them from the
// build tree where they differ from build to build.
func MakeExt4(ctx context.Context, dst *os.File, off, size int64, srcDir, label, uuid string, epoch int64) error {
	if len(label) > 16 {
		return fmt.Errorf("ext4 label %q is longer than 16 bytes", label)
	}
	confFile, err := os.CreateTemp("", "cps-mke2fs-*.conf")
	if err != nil {
		return fmt.Errorf("ext4: %w", err)
	}
	conf := confFile.Name()
	defer os.Remove(conf)
	if _, err := confFile.WriteString(mke2fsConf); err != nil {
		confFile.Close()
		return fmt.Errorf("ext4: %w", err)
	}
	confFile.Close()
	env := append(os.Environ(), "MKE2FS_CONFIG="+conf)
	if epoch > 0 {
		env = append(env, "E2FSPROGS_FAKE_TIME="+strconv.FormatInt(epoch, 10))
	}

	args := []string{"-q", "-F", "-t", "ext4", "-L", label}
	// offset: mke2fs writes straight into the image at the partition, so
	// only the filesystem's data is written, once. lazy_*_init: the inode
	// tables and journal lie in a fresh sparse file and read as zeros
	// already; writing them would only fill holes.
	ext := []string{"offset=" + strconv.FormatInt(off, 10), "root_owner=0:0", "nodiscard", "lazy_itable_init=1", "lazy_journal_init=1"}
	if uuid != "" {
		args = append(args, "-U", uuid)
		// The directory-index hash seed is random unless given.
		ext = append(ext, "hash_seed="+uuid)
	}
	args = append(args, "-E", strings.Join(ext, ","))
	if srcDir != "" {
		args = append(args, "-d", srcDir)
	}
	// dst is written through its path; the descriptor sees the same file.
	args = append(args, dst.Name(), strconv.FormatInt(size/1024, 10)+"k")
	if err := run(ctx, env, "mkfs.ext4", args...); err != nil {
		if strings.Contains(err.Error(), "Could not allocate") || strings.Contains(err.Error(), "No space left") {
			return fmt.Errorf("ext4: the content of %s does not fit in %d bytes; make the partition (or the image size) bigger: %w", srcDir, size, ErrNoSpace)
		}
		return fmt.Errorf("ext4: %w", err)
	}
	if epoch > 0 && srcDir != "" {
		// e2fsprogs opens "file?offset=N" as the filesystem at N.
		dev := dst.Name() + "?offset=" + strconv.FormatInt(off, 10)
		if err := pinTimes(ctx, env, dev, srcDir, epoch); err != nil {
			return fmt.Errorf("ext4: %w", err)
		}
	}
	return nil
}

// pinTimes sets every inode's times as MakeExt4 documents, with one
// debugfs session (a command per field; debugfs keeps the metadata
// checksums right).
func pinTimes(ctx context.Context, env []string, img, srcDir string, epoch int64) error {
	var cmds bytes.Buffer
	at := "@" + strconv.FormatInt(epoch, 10)
	err := filepath.WalkDir(srcDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(srcDir, p)
		in := "/" + filepath.ToSlash(rel)
		if rel == "." {
			in = "/"
		}
		// debugfs has no escape for these; such names do not occur in a
		// Debian root filesystem, and only their times stay unpinned.
		if strings.ContainsAny(in, "\"\n") {
			return nil
		}
		// debugfs takes a double-quoted word literally (no escapes).
		q := `"` + in + `"`
		fmt.Fprintf(&cmds, "sif %s atime %s\nsif %s ctime %s\nsif %s crtime %s\n", q, at, q, at, q, at)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.ModTime().Unix() > epoch {
			fmt.Fprintf(&cmds, "sif %s mtime %s\n", q, at)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk %s: %w", srcDir, err)
	}
	for _, lf := range []string{"/lost+found"} {
		fmt.Fprintf(&cmds, "sif %s atime %s\nsif %s ctime %s\nsif %s crtime %s\nsif %s mtime %s\n", lf, at, lf, at, lf, at, lf, at)
	}
	f, err := os.CreateTemp("", "cps-debugfs-*")
	if err != nil {
		return err
	}
	cf := f.Name()
	defer os.Remove(cf)
	_, err = f.Write(cmds.Bytes())
	f.Close()
	if err != nil {
		return err
	}
	return run(ctx, env, "debugfs", "-w", "-f", cf, img)
}

// run runs a tool and folds its stderr into the error, since that is where
// e2fsprogs says what went wrong.
func run(ctx context.Context, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr // stdout is only debugfs echoing its commands
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("%s is not installed; run `make deps` (scripts/deps.sh) or apt-get install e2fsprogs", name)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg := strings.TrimSpace(stderr.String())
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
				return fmt.Errorf("%s killed by %v: %s", name, st.Signal(), msg)
			}
		}
		return fmt.Errorf("%s failed: %v: %s", name, err, msg)
	}
	// debugfs reports per-command failures on stderr with exit code 0.
	if name == "debugfs" {
		for _, l := range strings.Split(stderr.String(), "\n") {
			if strings.HasPrefix(l, "sif:") || strings.Contains(l, "File not found") {
				return fmt.Errorf("debugfs: %s", l)
			}
		}
	}
	return nil
}
