package tls12

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
)

var (
	certOnce  sync.Once
	testCerts []tls.Certificate // ECDSA P-256, RSA 2048
)

func selfSigned(key crypto.Signer) tls.Certificate {
	c, err := testpeer.MakeCert(testpeer.CertSpec{
		DNSNames: []string{"localhost"}, NotAfter: time.Now().Add(time.Hour), Key: key, Leaf: true,
	})
	if err != nil {
		panic(err)
	}
	return c.Cert
}

// serverCerts returns an ECDSA and an RSA certificate; crypto/tls picks the
// one the negotiated suite needs.
func serverCerts() []tls.Certificate {
	certOnce.Do(func() {
		ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		testCerts = []tls.Certificate{selfSigned(ek), selfSigned(rk)}
	})
	return testCerts
}

// keyLog collects "CLIENT_RANDOM <client_random> <master_secret>" lines, as
// the gateway's KeyLogWriter would, by client random.
type keyLog struct {
	mu      sync.Mutex
	masters map[string][]byte
}

func (k *keyLog) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "CLIENT_RANDOM" {
			continue
		}
		m, err := hex.DecodeString(f[2])
		if err != nil {
			return 0, err
		}
		if k.masters == nil {
			k.masters = map[string][]byte{}
		}
		k.masters[f[1]] = m
	}
	return len(p), nil
}

func (k *keyLog) master(clientRandom []byte) []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.masters[hex.EncodeToString(clientRandom)]
}

// captureConn is the raw connection given to tls.Server. Reads stop at
// record boundaries, so that crypto/tls cannot read past the client's
// Finished into its own buffer; the first record each way (ClientHello,
// ServerHello) is kept to parse the randoms from.
type captureConn struct {
	net.Conn
	hdr    [RecordHeaderLen]byte
	hn     int
	remain int
	in     []byte // the first record read
	out    []byte // bytes written until the first record is complete
}

func recordDone(b []byte) bool {
	return len(b) >= RecordHeaderLen && len(b) >= RecordHeaderLen+(int(b[3])<<8|int(b[4]))
}

func (c *captureConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.remain == 0 {
		p = p[:min(len(p), RecordHeaderLen-c.hn)]
	} else {
		p = p[:min(len(p), c.remain)]
	}
	n, err := c.Conn.Read(p)
	if c.remain == 0 {
		copy(c.hdr[c.hn:], p[:n])
		if c.hn += n; c.hn == RecordHeaderLen {
			c.hn, c.remain = 0, int(c.hdr[3])<<8|int(c.hdr[4])
		}
	} else {
		c.remain -= n
	}
	if !recordDone(c.in) {
		c.in = append(c.in, p[:n]...)
	}
	return n, err
}

func (c *captureConn) Write(p []byte) (int, error) {
	if !recordDone(c.out) {
		c.out = append(c.out, p...)
	}
	return c.Conn.Write(p)
}

// session is what the gateway holds after the handshake: the raw socket and
// the record layer.
type session struct {
	conn     net.Conn
	suite    uint16
	key, iv  []byte // the client's, for fuzz seeds
	o        *Opener
	s        *Sealer
	rbuf     []byte
	captured [][]byte // first records as received, for fuzz seeds
	seqZero  bool     // the first record was checked not to open at seq 0
}

// acceptTLS12 runs the crypto/tls server handshake and switches to
// Opener/Sealer on the raw connection, both at sequence number 1.
func acceptTLS12(ln net.Listener) (*session, error) {
	raw, err := ln.Accept()
	if err != nil {
		return nil, err
	}
	raw.SetDeadline(time.Now().Add(2 * time.Minute))
	kl := new(keyLog)
	cc := &captureConn{Conn: raw}
	cfg := &tls.Config{
		Certificates:           serverCerts(),
		MinVersion:             tls.VersionTLS12,
		MaxVersion:             tls.VersionTLS12,
		CipherSuites:           suiteIDs(),
		SessionTicketsDisabled: true,
		KeyLogWriter:           kl,
	}
	tc := tls.Server(cc, cfg)
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	st := tc.ConnectionState()
	if st.Version != tls.VersionTLS12 {
		raw.Close()
		return nil, fmt.Errorf("negotiated %x", st.Version)
	}
	ht, cr, err := HelloRandom(cc.in)
	if err != nil || ht != 1 {
		raw.Close()
		return nil, fmt.Errorf("ClientHello random: type %d, %v", ht, err)
	}
	ht, sr, err := HelloRandom(cc.out)
	if err != nil || ht != 2 {
		raw.Close()
		return nil, fmt.Errorf("ServerHello random: type %d, %v", ht, err)
	}
	master := kl.master(cr)
	if master == nil {
		raw.Close()
		return nil, errors.New("no CLIENT_RANDOM line for this client random")
	}
	ck, civ, sk, siv, err := Keys(st.CipherSuite, master, cr, sr)
	if err != nil {
		raw.Close()
		return nil, err
	}
	o, err := NewOpener(st.CipherSuite, ck, civ, 1)
	if err != nil {
		raw.Close()
		return nil, err
	}
	s, err := NewSealer(st.CipherSuite, sk, siv, 1)
	if err != nil {
		raw.Close()
		return nil, err
	}
	return &session{conn: raw, suite: st.CipherSuite, key: ck, iv: civ, o: o, s: s, rbuf: make([]byte, MaxRecordLen)}, nil
}

func suiteIDs() []uint16 {
	ids := make([]uint16, len(testSuites))
	for i, ts := range testSuites {
		ids[i] = ts.id
	}
	return ids
}

// next reads and opens one record. The first record is also tried at
// sequence number 0, which must fail: each side's Finished used 0.
func (ss *session) next() (content []byte, ct uint8, err error) {
	if _, err := io.ReadFull(ss.conn, ss.rbuf[:RecordHeaderLen]); err != nil {
		return nil, 0, err
	}
	n, err := RecordLen(ss.rbuf)
	if err != nil {
		return nil, 0, err
	}
	rec := ss.rbuf[:n]
	if _, err := io.ReadFull(ss.conn, rec[RecordHeaderLen:]); err != nil {
		return nil, 0, err
	}
	if len(ss.captured) < 4 {
		ss.captured = append(ss.captured, bytes.Clone(rec))
	}
	if ss.o.Seq() == 1 {
		o0, _ := NewOpener(ss.suite, ss.key, ss.iv, 0)
		if _, _, err := o0.Open(bytes.Clone(rec)); err != ErrBadRecordMAC {
			return nil, 0, fmt.Errorf("first record at seq 0: %v, want ErrBadRecordMAC", err)
		}
		ss.seqZero = true
	}
	content, ct, err = ss.o.Open(rec)
	if err != nil {
		return nil, 0, err
	}
	if ct == TypeAlert {
		return content, ct, ParseAlert(content)
	}
	return content, ct, nil
}

// streamBlock backs the test payloads: the payload of size n is
// streamBlock[n%1021 : n%1021+n].
var streamBlock = pattern(MaxPlaintext+1024, 42)

func payloadFor(n int) []byte { return streamBlock[n%1021 : n%1021+n] }

// interopSizes are the record sizes each side sends: every size 0..2^14
// when full, else 0..300 and a stride of 31 through the rest.
func interopSizes(full bool) []int {
	var sizes []int
	for n := 0; n <= MaxPlaintext; n++ {
		if full || n <= 300 || n%31 == 0 || n == MaxPlaintext {
			sizes = append(sizes, n)
		}
	}
	return sizes
}

func streamHash(sizes []int) ([]byte, int) {
	h := sha256.New()
	total := 0
	for _, n := range sizes {
		h.Write(payloadFor(n))
		total += n
	}
	return h.Sum(nil), total
}

// goClient sends a record of every size, reads the server's records of
// every size (hashing them), then expects close_notify and closes, which
// sends its own close_notify.
func goClient(addr string, suite uint16, sizes []int) error {
	c, err := tls.Dial("tcp", addr, &tls.Config{
		InsecureSkipVerify:          true,
		MaxVersion:                  tls.VersionTLS12,
		CipherSuites:                []uint16{suite},
		DynamicRecordSizingDisabled: true, // one Write of <= 2^14 bytes = one record
	})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if st := c.ConnectionState(); st.CipherSuite != suite || st.Version != tls.VersionTLS12 {
		return fmt.Errorf("client negotiated %x / %x", st.Version, st.CipherSuite)
	}
	readErr := make(chan error, 1)
	go func() {
		want, total := streamHash(sizes)
		h := sha256.New()
		if _, err := io.CopyN(h, c, int64(total)); err != nil {
			readErr <- fmt.Errorf("client read: %w", err)
			return
		}
		if !bytes.Equal(h.Sum(nil), want) {
			readErr <- errors.New("client: server stream corrupted")
			return
		}
		readErr <- nil
	}()
	for _, n := range sizes {
		if n == 0 {
			continue // crypto/tls sends nothing for an empty Write
		}
		if _, err := c.Write(payloadFor(n)); err != nil {
			return fmt.Errorf("client write: %w", err)
		}
	}
	if err := <-readErr; err != nil {
		return err
	}
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		return fmt.Errorf("client: want EOF after close_notify, got %d bytes, %v", n, err)
	}
	return c.Close()
}

// serve is the server's side of goClient.
func serve(ss *session, sizes []int) error {
	writeErr := make(chan error, 1)
	go func() {
		out := make([]byte, 0, 96<<10)
		for _, n := range sizes {
			var err error
			if out, err = ss.s.Seal(out, TypeApplicationData, payloadFor(n)); err != nil {
				writeErr <- err
				return
			}
			if len(out) > 64<<10 {
				if _, err := ss.conn.Write(out); err != nil {
					writeErr <- err
					return
				}
				out = out[:0]
			}
		}
		_, err := ss.conn.Write(out)
		writeErr <- err
	}()
	for _, n := range sizes {
		if n == 0 {
			continue
		}
		got, ct, err := ss.next()
		if err != nil {
			return fmt.Errorf("server read, record of %d: %w", n, err)
		}
		if ct != TypeApplicationData || !bytes.Equal(got, payloadFor(n)) {
			return fmt.Errorf("server: record of %d bytes arrived as type %d, %d bytes or corrupted", n, ct, len(got))
		}
	}
	if err := <-writeErr; err != nil {
		return err
	}
	out, err := ss.s.SealAlert(nil, AlertCloseNotify)
	if err != nil {
		return err
	}
	if _, err := ss.conn.Write(out); err != nil {
		return err
	}
	if _, _, err := ss.next(); err != ErrCloseNotify {
		return fmt.Errorf("server: want the client's close_notify, got %v", err)
	}
	return nil
}

// TestInteropGoClient runs every suite, with ECDSA and RSA certificates,
// against a crypto/tls client: records of many sizes both ways, hashed, then
// close_notify both ways. The first suite sends every size 0..2^14 unless
// -short.
func TestInteropGoClient(t *testing.T) {
	for i, ts := range testSuites {
		t.Run(ts.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			sizes := interopSizes(i == 0 && !testing.Short())
			clientErr := make(chan error, 1)
			go func() { clientErr <- goClient(ln.Addr().String(), ts.id, sizes) }()
			ss, err := acceptTLS12(ln)
			if err != nil {
				t.Fatal(err)
			}
			defer ss.conn.Close()
			if ss.suite != ts.id {
				t.Fatalf("negotiated %s", tls.CipherSuiteName(ss.suite))
			}
			if err := serve(ss, sizes); err != nil {
				t.Fatal(err)
			}
			if err := <-clientErr; err != nil {
				t.Fatal(err)
			}
			if !ss.seqZero {
				t.Fatal("sequence number 0 not checked")
			}
			_, total := streamHash(sizes)
			t.Logf("%s: %d records, %.1f MiB each way; first record after the handshake is seq 1 both ways",
				tls.CipherSuiteName(ss.suite), len(sizes), float64(total)/(1<<20))
			writeSeeds(t, ss, "go", i)
		})
	}
}
