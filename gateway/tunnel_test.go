package gateway

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"


	"github.com/httvps/httvps/codec/mux"
)

// echoMember is a loopback TCP member that echoes every connection and
// passes the client's FIN on (half-close), counting its connections.
func echoMember(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var open atomic.Int64
	addr := listenRaw(t, func(c net.Conn) {
		open.Add(1)
		defer open.Add(-1)
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
	})
	return addr, &open
}

// tunnelEcho sends n random bytes on a new stream of c, half-closes, reads
// the echo to its EOF and compares hashes.
func tunnelEcho(c *tunClient, n int) error {
	data := make([]byte, n)
	rand.Read(data)
	s := c.open(mux.KindTCP, nil)
	errc := make(chan error, 1)
	go func() {
		if err := s.Write(data); err != nil {
			errc <- err
			return
		}
		errc <- s.CloseWrite()
	}()
	h := sha256.New()
	got, err := io.Copy(h, s)
	if err != nil {
		return err
	}
	if err := <-errc; err != nil {
		return err
	}
	if want := sha256.Sum256(data); got != int64(n) || !bytes.Equal(h.Sum(nil), want[:]) {
		return errors.New("echo differs")
	}
	return nil
}

func TestTunnelManyStreamsHashes(t *testing.T) {
	member, _ := echoMember(t)
	m := &countingMetrics{}
	g := startGateway(t, member, func(c *Config) { c.TunnelMaxStreams = 512; c.Metrics = m })
	c := dialTunnel(t, g, "s3cret")
	var wg sync.WaitGroup
	errs := make(chan error, 500)
	for i := 0; i < 500; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := tunnelEcho(c, 16<<10+i*97); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c.check()
	if p := m.peak.Load(); p > 4<<20+256<<10+64<<10 {
		t.Fatalf("gateway buffered %d bytes, beyond the session window and BufferCap", p)
	}
}
