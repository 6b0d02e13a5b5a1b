package testpeer

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// PseudoRandom returns a reader of n deterministic pseudo-random bytes for
// seed: the same (n, seed) always gives the same bytes.
func PseudoRandom(n int64, seed uint64) io.Reader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[0:], uint64(n))
	binary.LittleEndian.PutUint64(s[8:], seed)
	copy(s[16:], "testpeer-origin!")
	return io.LimitReader(rand.NewChaCha8(s), n)
}

// PseudoRandomSHA256 is the hex SHA-256 of PseudoRandom(n, seed).
func PseudoRandomSHA256(n int64, seed uint64) string {
	h := sha256.New()
	if _, err := io.CopyBuffer(h, PseudoRandom(n, seed), make([]byte, 256<<10)); err != nil {
		panic(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Origin is an HTTP server on loopback whose content has known hashes:
//
//	GET  /bytes/N?seed=S   N bytes of PseudoRandom(N, S) (S defaults to 0)
//	POST /upload           answers "<hex sha256> <length>\n" of the body
type Origin struct {
	Addr string // "127.0.0.1:port"
	srv  *http.Server
}

// URL returns the origin's URL for path.
func (o *Origin) URL(path string) string { return "http://" + o.Addr + path }

// StartOrigin starts an Origin and stops it at test end.
func StartOrigin(t testing.TB) *Origin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testpeer: origin listen: %v", err)
	}
	o := &Origin{Addr: ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bytes/{n}", serveBytes)
	mux.HandleFunc("POST /upload", serveUpload)
	o.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go o.srv.Serve(ln)
	t.Cleanup(func() { o.srv.Close() })
	return o
}

func serveBytes(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.PathValue("n"), 10, 64)
	if err != nil || n < 0 {
		http.Error(w, "bad length", http.StatusBadRequest)
		return
	}
	var seed uint64
	if s := r.URL.Query().Get("seed"); s != "" {
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			http.Error(w, "bad seed", http.StatusBadRequest)
			return
		}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	io.CopyBuffer(w, PseudoRandom(n, seed), make([]byte, 64<<10))
}

func serveUpload(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, r.Body, make([]byte, 64<<10))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%s %d\n", hex.EncodeToString(h.Sum(nil)), n)
}

// ParseUploadAnswer splits the origin's upload answer into hash and length.
func ParseUploadAnswer(body string) (sum string, n int64, err error) {
	f := strings.Fields(body)
	if len(f) != 2 {
		return "", 0, fmt.Errorf("testpeer: bad upload answer %q", body)
	}
	n, err = strconv.ParseInt(f[1], 10, 64)
	return f[0], n, err
}

// UDPEcho starts a UDP server on loopback that sends every datagram back to
// its sender, and returns its address.
func UDPEcho(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testpeer: udp echo listen: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().String()
}
