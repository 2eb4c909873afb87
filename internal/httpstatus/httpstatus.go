// Package httpstatus records the status code an http.Handler answered
// with, for metrics, without hiding what the connection can do: bodies
// copied from files still go out with sendfile(2) (ReadFrom), streams are
// still flushed (Flush), and http.ResponseController still reaches the
// connection (Unwrap).
package httpstatus

import (
	"io"
	"net/http"
)

// Writer wraps an http.ResponseWriter and records its status code.
type Writer struct {
	http.ResponseWriter
	status int
}

// Wrap returns a Writer over w.
func Wrap(w http.ResponseWriter) *Writer { return &Writer{ResponseWriter: w} }

// Status is the code answered: 200 when the handler wrote without a
// WriteHeader, or wrote nothing at all.
func (w *Writer) Status() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// WriteHeader records the first code and passes it on.
func (w *Writer) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write passes b on.
func (w *Writer) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// ReadFrom hands a body copy to the connection's own ReadFrom, so that
// files go out with sendfile(2) instead of a read and a write per 32 KiB
// in user space (which cost the server most of its CPU in a boot storm).
func (w *Writer) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(writerOnly{w.ResponseWriter}, src)
}

// Flush lets streamed answers through.
func (w *Writer) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the wrapped writer.
func (w *Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// writerOnly hides every method but Write (no ReadFrom loop back).
type writerOnly struct{ io.Writer }
