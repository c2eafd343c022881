package glance

import (
	"io"

	"github.com/conpaas/cps/images/checksum"
)

// hashedStream reads src in large chunks in its own goroutine, hashes each
// chunk, and hands it to the HTTP transport through a pipe. Reading and
// hashing the next chunks overlaps with sending the current one; feeding
// the hashers straight from the transport's small (32 KiB) reads cost
// ~40% throughput in scripts/bench/glance.sh.
func hashedStream(src io.Reader, m *checksum.Multi) (body io.ReadCloser, wait func()) {
	const chunk, depth = 4 << 20, 3
	pr, pw := io.Pipe()
	full := make(chan []byte, depth)
	free := make(chan []byte, depth+1)
	for i := 0; i < depth+1; i++ {
		free <- make([]byte, chunk)
	}
	errc := make(chan error, 1)
	stop := make(chan struct{}) // closed when the transport stopped reading
	done := make(chan struct{})
	go func() { // producer: read + hash
		defer close(full)
		for {
			var b []byte
			select {
			case b = <-free:
			case <-stop:
				errc <- io.ErrClosedPipe
				return
			}
			n, err := io.ReadFull(src, b)
			if n > 0 {
				if m != nil {
					m.Write(b[:n])
				}
				full <- b[:n]
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				errc <- nil
				return
			}
			if err != nil {
				errc <- err
				return
			}
		}
	}()
	go func() { // consumer: write to the pipe
		defer close(done)
		var werr error
		for b := range full {
			if werr == nil {
				if _, werr = pw.Write(b); werr != nil {
					close(stop)
				}
			}
			free <- b[:cap(b)]
		}
		err := <-errc
		if werr != nil {
			err = werr
		}
		pw.CloseWithError(err) // nil means EOF
	}()
	return pr, func() { <-done }
}
