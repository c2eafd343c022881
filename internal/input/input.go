// Package input opens what a user names as an input file the way md5sum
// and friends treat it: a regular file, a block device (sized with
// BLKGETSIZE64, since stat says 0), or a stream (a pipe, FIFO, character
// device or standard input) read to EOF. Opening a FIFO that has no writer
// and reading a stream that has no data both wait, as md5sum does, but give
// up when the context is cancelled (Ctrl-C, SIGTERM) instead of hanging.
package input

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Kind is what sort of input a path names.
type Kind int

const (
	Regular Kind = iota // a regular file: size from stat, holes from SEEK_DATA
	Block               // a block device: size from BLKGETSIZE64, random access
	Stream              // pipe, FIFO, character device, terminal: read once to EOF
)

func (k Kind) String() string {
	switch k {
	case Regular:
		return "regular file"
	case Block:
		return "block device"
	}
	return "stream"
}

// ErrNotSeekable is wrapped when a command needs random access (a file or
// a device) and was given a stream.
var ErrNotSeekable = errors.New("not a file or block device")

// ErrTooLarge is wrapped by ReadFile when the input exceeds its limit.
var ErrTooLarge = errors.New("input too large")

// File is an opened input. Read honours the context Open was given.
type File struct {
	*os.File
	Kind Kind
	// Size is the byte size of a regular file or block device, -1 for a
	// stream (known only at EOF).
	Size int64
	name string
	ctx  context.Context
	stop func() bool
}

// Stdin is the name that means standard input, as for md5sum.
const Stdin = "-"

// Open opens path for reading ("-" is standard input). It refuses a
// directory. Opening a FIFO waits for a writer until ctx is done.
func Open(ctx context.Context, path string) (*File, error) {
	name := path
	if path == Stdin {
		// A fresh open of fd 0 rather than os.Stdin: a pipe opened by name
		// goes through Go's poller, so a read can be cancelled.
		path = "/dev/stdin"
	}
	st, err := os.Stat(path)
	if err != nil {
		if name == Stdin {
			return nil, fmt.Errorf("standard input: %w", err)
		}
		return nil, err
	}
	if st.IsDir() {
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EISDIR}
	}
	var f *os.File
	if st.Mode()&os.ModeNamedPipe != 0 {
		f, err = openFIFO(ctx, path)
	} else {
		f, err = os.Open(path)
	}
	if err != nil && name == Stdin {
		f, err = os.Stdin, nil // e.g. a socket, which cannot be opened by name
	}
	if err != nil {
		return nil, err
	}
	if name == Stdin {
		name = "standard input"
	}
	in := &File{File: f, name: name, ctx: ctx}
	in.Kind, in.Size, err = kindAndSize(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	if in.Kind == Stream {
		// A read blocked on a pipe or FIFO returns when ctx is done.
		in.stop = context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
	}
	return in, nil
}

// openFIFO opens a FIFO for reading, which blocks in the kernel until a
// writer opens it. If ctx ends first, opening the write side without
// blocking (possible since a reader is waiting) releases the open.
func openFIFO(ctx context.Context, path string) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	done := make(chan result, 1)
	go func() {
		f, err := os.Open(path)
		done <- result{f, err}
	}()
	select {
	case r := <-done:
		return r.f, r.err
	case <-ctx.Done():
	}
	if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		w.Close()
	}
	go func() {
		if r := <-done; r.f != nil {
			r.f.Close()
		}
	}()
	return nil, fmt.Errorf("%s is a FIFO and no writer opened it: %w", path, ctx.Err())
}

// kindAndSize classifies an open file and sizes it.
func kindAndSize(f *os.File) (Kind, int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	m := st.Mode()
	switch {
	case m.IsRegular():
		return Regular, st.Size(), nil
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0:
		n, err := blockSize(f)
		if err != nil {
			return 0, 0, fmt.Errorf("size of block device %s (BLKGETSIZE64): %w", f.Name(), err)
		}
		return Block, n, nil
	}
	return Stream, -1, nil
}

// blockSize asks the kernel for a block device's size in bytes; a test
// may replace it.
var blockSize = func(f *os.File) (int64, error) {
	n, err := unix.IoctlGetUint64(int(f.Fd()), unix.BLKGETSIZE64)
	return int64(n), err
}

// Stat says what path names and its size (-1 for a stream) without
// reading it; a FIFO is not opened, so its writer is left for Open.
func Stat(path string) (Kind, int64, error) {
	if path == Stdin {
		return Stream, -1, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	switch m := st.Mode(); {
	case m.IsDir():
		return 0, 0, &os.PathError{Op: "open", Path: path, Err: syscall.EISDIR}
	case m.IsRegular():
		return Regular, st.Size(), nil
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0:
		f, err := os.Open(path)
		if err != nil {
			return 0, 0, err
		}
		defer f.Close()
		return kindAndSize(f)
	}
	return Stream, -1, nil
}

// Size is the byte size of an open regular file or block device, and -1
// for a stream.
func Size(f *os.File) (int64, error) {
	_, n, err := kindAndSize(f)
	return n, err
}

// Name is the path the input was opened by ("standard input" for "-").
func (f *File) Name() string { return f.name }

// Seekable reports whether the input allows random access.
func (f *File) Seekable() bool { return f.Kind != Stream }

// RequireSeekable returns nil for a file or block device, and for a
// stream an error saying that what needs to be done to it needs a file.
func (f *File) RequireSeekable(what string) error {
	if f.Seekable() {
		return nil
	}
	return fmt.Errorf("%s is a %s; %s needs random access: save it to a file first (e.g. cat > image.img): %w", f.Name(), f.Kind, what, ErrNotSeekable)
}

// Read reads from the input; once the context is done it returns the
// context's error, also when it was waiting for data on a pipe.
func (f *File) Read(p []byte) (int, error) {
	if err := f.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := f.File.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) && f.ctx.Err() != nil {
		return n, f.ctx.Err()
	}
	return n, err
}

// Close closes the input.
func (f *File) Close() error {
	if f.stop != nil {
		f.stop()
	}
	return f.File.Close()
}

// ReadFile reads a whole input of at most limit bytes: a template, a
// manifest, a variable file. A bigger input (or an endless one such as
// /dev/zero) is an error wrapping ErrTooLarge after limit+1 bytes.
func ReadFile(ctx context.Context, path string, limit int64) ([]byte, error) {
	f, err := Open(ctx, path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if f.Kind != Stream && f.Size > limit {
		return nil, fmt.Errorf("%s is %d bytes, over the %d-byte limit (is it the right file?): %w", path, f.Size, limit, ErrTooLarge)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is over the %d-byte limit (is it the right file?): %w", path, limit, ErrTooLarge)
	}
	return b, nil
}
