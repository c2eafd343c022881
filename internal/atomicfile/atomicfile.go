// Package atomicfile writes files so that a reader sees either the old
// content or the complete new content, never a half-written file: write to a
// temporary file in the same directory, fsync, then rename over the target.
//
// A path that is a symbolic link is written through: the link's target is
// replaced and the link stays. Each temporary file holds an flock while it
// lives, so one left by a killed run (kill -9, power loss) is recognised
// and removed by the next write of the same file.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// File is a temporary file that becomes Path on Commit. Until then, Abort
// (safe to defer) removes it.
type File struct {
	*os.File
	Path string
	done bool
}

// Create starts writing path (the target, if path is a symbolic link). The
// temporary file lives next to it, named .NAME.tmp-*, so the final rename
// never crosses filesystems; stale ones of earlier runs are removed first.
func Create(path string, perm os.FileMode) (*File, error) {
	target, err := Resolve(path)
	if err != nil {
		return nil, err
	}
	// The rename at the end replaces whatever the target is: as root, a
	// device node (convert -o /dev/full put a regular file in its place)
	// or, failing only then, a directory. Refuse those before any work.
	if fi, err := os.Stat(target); err == nil && !fi.Mode().IsRegular() {
		if fi.IsDir() {
			return nil, fmt.Errorf("%s is a directory: name the file to write, e.g. %s", path, filepath.Join(path, "NAME"))
		}
		return nil, fmt.Errorf("%s is %s, not a regular file, and writing it would replace it with one: name a regular file to write", path, kind(fi.Mode()))
	}
	f, err := Scratch(target, "")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("chmod %s: %w", f.Name(), err)
	}
	return &File{File: f, Path: target}, nil
}

// Resolve follows path while it is a symbolic link, also a dangling one
// (whose target is then created), and returns the path to write.
func Resolve(path string) (string, error) {
	p := path
	for range 40 {
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			return p, nil
		}
		link, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(link) {
			link = filepath.Join(filepath.Dir(p), link)
		}
		p = link
	}
	return "", fmt.Errorf("%s: too many levels of symbolic links", path)
}

// kind names a file type that is not a regular file, for messages.
func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "an irregular file"
}

// staleAge is how old an unlocked temporary file must be to be removed:
// a writer locks its file right after creating it, and this leaves that
// moment alone.
const staleAge = 10 * time.Second

// Scratch creates a locked temporary file .NAME.tmp-WHAT-* next to the
// file path (for work files of a run that writes path), after removing
// the stale .NAME.tmp-* files of runs that died.
func Scratch(path, what string) (*os.File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	prefix := "." + base + ".tmp-"
	removeStale(dir, prefix)
	pattern := prefix + "*"
	if what != "" {
		pattern = prefix + what + "-*"
	}
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		if _, serr := os.Stat(dir); errors.Is(serr, fs.ErrNotExist) {
			return nil, fmt.Errorf("cannot write %s: the directory %s does not exist; create it first or write elsewhere: %w", path, dir, err)
		}
		return nil, fmt.Errorf("cannot write %s: a temporary file in %s could not be created (%w); write elsewhere or fix the directory", path, dir, errors.Unwrap(err))
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return f, nil
}

// removeStale removes the temporary files in dir named prefix* that no
// live process holds (their flock can be taken) and that are not brand
// new.
func removeStale(dir, prefix string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		fi, err := f.Stat()
		if err == nil && time.Since(fi.ModTime()) > staleAge {
			if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil && os.Remove(p) == nil {
				fmt.Fprintf(os.Stderr, "removed %s, left by an interrupted run\n", p)
			}
		}
		f.Close()
	}
}

// Commit syncs, closes and renames the temporary file to Path.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("atomicfile: %s already committed or aborted", f.Path)
	}
	f.done = true
	tmp := f.File.Name()
	if err := f.File.Sync(); err != nil {
		f.File.Close()
		os.Remove(tmp)
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.File.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, f.Path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename %s to %s: %w", tmp, f.Path, err)
	}
	return nil
}

// Abort removes the temporary file unless Commit already succeeded.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	os.Remove(f.File.Name())
}

// WriteFile is os.WriteFile, atomically.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	return f.Commit()
}
