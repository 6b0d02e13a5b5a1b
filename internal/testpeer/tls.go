package testpeer

// TLS peers for the gateway's TLS listener: a self-signed certificate (also
// as a PEM file for curl, openssl and v2ray-plugin), WebSocket dialers over
// crypto/tls, and RawTLS, a client that lets crypto/tls do the handshake and
// then runs the record layer itself so tests can send records crypto/tls
// never would (bad tags, odd lengths and types, KeyUpdate, a ClientHello
// after the handshake). Its record protection (tlsrecord.go) is written
// independently of codec/tls13 and codec/tls12, so the two can catch each
// other's mistakes.

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// TestCert is a self-signed certificate (by default ECDSA P-256, for
// localhost and 127.0.0.1, its own root; see CertSpec).
type TestCert struct {
	Cert    tls.Certificate
	Pool    *x509.CertPool // trusts Cert
	PEMFile string         // the certificate in PEM, for curl/openssl/v2ray-plugin ("" from MakeCert)
	KeyFile string         // its private key, PKCS #8 in PEM (nginx, the binaries' -tls-key; "" from MakeCert)
}

// GetCertificate is a gateway.TLSConfig.GetCertificate that always returns c.
func (c *TestCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return &c.Cert, nil
}

// ClientConfig returns a client configuration that trusts c, for ServerName
// localhost, with TLS versions up to maxVersion (0: TLS 1.3).
func (c *TestCert) ClientConfig(maxVersion uint16) *tls.Config {
	return &tls.Config{RootCAs: c.Pool, ServerName: "localhost", MaxVersion: maxVersion}
}

// WriteFiles writes the certificate and its key in PEM to the given paths
// (for tests that replace a served pair in place).
func (c *TestCert) WriteFiles(certFile, keyFile string) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.Cert.PrivateKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Certificate[0]}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// CertSpec says what a TestCert is for; the zero value is SelfSignedCert's.
type CertSpec struct {
	DNSNames []string      // nil with IPs nil: localhost, and the IP address 127.0.0.1
	IPs      []net.IP      // the IP addresses it is for (see DNSNames)
	NotAfter time.Time     // zero: a day ahead; in the past for an expired one
	Key      crypto.Signer // nil: a new ECDSA P-256 key
	// Leaf makes an end-entity certificate rather than its own CA (IsCA
	// false, no certSign usage); crypto/tls trusts it all the same when it
	// is in RootCAs.
	Leaf bool
}

// SelfSignedCert makes a TestCert for localhost and 127.0.0.1; its files
// live in t.TempDir().
func SelfSignedCert(t testing.TB) *TestCert {
	t.Helper()
	return NewCert(t, CertSpec{})
}

// NewCert makes a TestCert to spec; its files live in t.TempDir().
func NewCert(t testing.TB, spec CertSpec) *TestCert {
	t.Helper()
	c, err := MakeCert(spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c.PEMFile, c.KeyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := c.WriteFiles(c.PEMFile, c.KeyFile); err != nil {
		t.Fatal(err)
	}
	return c
}

// MakeCert is NewCert in memory only (PEMFile and KeyFile are empty), for
// certificates made once per test process, outside any one test.
func MakeCert(spec CertSpec) (*TestCert, error) {
	key := spec.Key
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		key = k
	}
	names, ips := spec.DNSNames, spec.IPs
	if names == nil && ips == nil {
		names, ips = []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	cn := ""
	switch {
	case len(names) > 0:
		cn = names[0]
	case len(ips) > 0:
		cn = ips[0].String()
	}
	notAfter := spec.NotAfter
	if notAfter.IsZero() {
		notAfter = time.Now().Add(24 * time.Hour)
	}
	notBefore := time.Now().Add(-time.Hour)
	if notAfter.Before(notBefore) {
		notBefore = notAfter.Add(-time.Hour)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		DNSNames:              names,
		IPAddresses:           ips,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // OpenSSL and v2ray-plugin trust it as its own root
	}
	if spec.Leaf {
		tmpl.KeyUsage, tmpl.BasicConstraintsValid, tmpl.IsCA = x509.KeyUsageDigitalSignature, false, false
	}
	if _, ok := key.(*rsa.PrivateKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment // RSA key exchange
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &TestCert{
		Cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		Pool: pool,
	}, nil
}

// DialWSS opens a WebSocket over crypto/tls to url ("wss://host:port/path").
func DialWSS(ctx context.Context, url string, cfg *tls.Config) (*WSConn, error) {
	d := ws.Dialer{Timeout: 10 * time.Second, TLSConfig: cfg}
	conn, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	return newWSConn(conn, br), nil
}

// DialWSFrom opens a WebSocket to url (ws:// or, with cfg, wss://) from
// the local address src, a loopback alias such as 127.0.0.2, so one test
// can be several clients ("" is any address).
func DialWSFrom(ctx context.Context, url, src string, cfg *tls.Config) (*WSConn, error) {
	var nd net.Dialer
	if src != "" {
		nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	d := ws.Dialer{Timeout: 10 * time.Second, TLSConfig: cfg, NetDial: nd.DialContext}
	conn, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	return newWSConn(conn, br), nil
}

// DialWSOver runs the WebSocket upgrade for url ("ws://host:port/path") over
// an established connection (a RawTLS, or a tls.Conn over a ChunkConn).
func DialWSOver(ctx context.Context, url string, conn net.Conn) (*WSConn, error) {
	d := ws.Dialer{
		Timeout: 10 * time.Second,
		NetDial: func(context.Context, string, string) (net.Conn, error) { return conn, nil },
	}
	c, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	return newWSConn(c, br), nil
}

// KeyLog collects crypto/tls key log lines (Config.KeyLogWriter) of one
// connection.
type KeyLog struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (k *KeyLog) Write(line []byte) (int, error) {
	f := strings.Fields(string(line))
	if len(f) == 3 {
		if b, err := hex.DecodeString(f[2]); err == nil {
			k.mu.Lock()
			if k.m == nil {
				k.m = map[string][]byte{}
			}
			k.m[f[0]] = b
			k.mu.Unlock()
		}
	}
	return len(line), nil
}

// Secret returns the logged secret for label (e.g. CLIENT_TRAFFIC_SECRET_0).
func (k *KeyLog) Secret(label string) []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.m[label]
}

// recordConn is the net.Conn crypto/tls handshakes over in DialRawTLS: it
// reads whole records only, so that nothing past the server's last
// handshake record is consumed, and it notes both hello randoms.
type recordConn struct {
	net.Conn
	br           *bufio.Reader
	pending      []byte
	clientRandom []byte
	serverRandom []byte
}

func (c *recordConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		var hdr [5]byte
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			return 0, err
		}
		rec := make([]byte, 5+(int(hdr[3])<<8|int(hdr[4])))
		copy(rec, hdr[:])
		if _, err := io.ReadFull(c.br, rec[5:]); err != nil {
			return 0, err
		}
		if c.serverRandom == nil && len(rec) >= 43 && rec[0] == 22 && rec[5] == 2 {
			c.serverRandom = append([]byte(nil), rec[11:43]...)
		}
		c.pending = rec
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *recordConn) Write(p []byte) (int, error) {
	if c.clientRandom == nil && len(p) >= 43 && p[0] == 22 && p[5] == 1 {
		c.clientRandom = append([]byte(nil), p[11:43]...)
	}
	return c.Conn.Write(p)
}

// TLSAlert is an alert received by RawTLS; its value is the description.
type TLSAlert uint8

func (a TLSAlert) Error() string { return fmt.Sprintf("testpeer: TLS alert %d received", uint8(a)) }

// Record content types and alert descriptions used by tests.
const (
	RecordCCS       = 20
	RecordAlert     = 21
	RecordHandshake = 22
	RecordAppData   = 23
)

// RawTLS is a TLS client whose handshake was done by crypto/tls and whose
// records it then protects itself. It is a net.Conn: Write sends application
// data, Read returns it (io.EOF after close_notify, a TLSAlert after another
// alert). One goroutine may read while another writes.
type RawTLS struct {
	TCP     net.Conn
	Version uint16
	Suite   uint16

	br *bufio.Reader

	// Owned by the reader.
	in             *recordKeys
	pending        []byte
	sawCloseNotify bool
	kuRequested    bool // a server KeyUpdate asked for ours
	kuCount        int  // server KeyUpdates read

	wmu   sync.Mutex // guards out, kuDue
	out   *recordKeys
	kuDue bool
}

// DialRawTLS connects to addr and hands the handshake to crypto/tls with cfg
// (its KeyLogWriter is replaced). Only TLS 1.3 suites and, for TLS 1.2,
// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 are supported (cfg.CipherSuites is
// set to it). The handshake is bounded by 10 s.
func DialRawTLS(addr string, cfg *tls.Config) (*RawTLS, error) {
	tcp, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	r, err := HandshakeRawTLS(tcp, cfg)
	if err != nil {
		tcp.Close()
	}
	return r, err
}

// HandshakeRawTLS is DialRawTLS over an open connection.
func HandshakeRawTLS(tcp net.Conn, cfg *tls.Config) (*RawTLS, error) {
	cfg = cfg.Clone()
	kl := &KeyLog{}
	cfg.KeyLogWriter = kl
	cfg.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	rc := &recordConn{Conn: tcp, br: bufio.NewReaderSize(tcp, 32<<10)}
	tc := tls.Client(rc, cfg)
	tcp.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	tcp.SetDeadline(time.Time{})
	if len(rc.pending) != 0 {
		return nil, errors.New("testpeer: bytes left over after the handshake")
	}
	st := tc.ConnectionState()
	r := &RawTLS{TCP: tcp, Version: st.Version, Suite: st.CipherSuite, br: rc.br}
	var err error
	switch st.Version {
	case tls.VersionTLS13:
		if r.out, err = newTLS13Keys(st.CipherSuite, kl.Secret("CLIENT_TRAFFIC_SECRET_0")); err != nil {
			return nil, err
		}
		r.in, err = newTLS13Keys(st.CipherSuite, kl.Secret("SERVER_TRAFFIC_SECRET_0"))
	case tls.VersionTLS12:
		r.out, r.in, err = newTLS12Keys(st.CipherSuite, kl.Secret("CLIENT_RANDOM"), rc.clientRandom, rc.serverRandom)
	default:
		err = fmt.Errorf("testpeer: TLS version %x", st.Version)
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Seal returns one record of content type ct carrying content, protected
// with the client's keys (TLS 1.3: ct is the inner type and pad zero bytes
// of padding follow it; TLS 1.2: ct is the outer type, pad is ignored).
func (r *RawTLS) Seal(ct uint8, content []byte, pad int) []byte {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	return r.out.seal(nil, ct, content, pad)
}

// WriteRaw writes b to the TCP connection as is.
func (r *RawTLS) WriteRaw(b []byte) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	_, err := r.TCP.Write(b)
	return err
}

// Write sends p as application data records of at most 2^14 bytes, in one
// TCP write.
func (r *RawTLS) Write(p []byte) (int, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	var out []byte
	if r.kuDue {
		r.kuDue = false
		out = r.out.seal(out, RecordHandshake, []byte{24, 0, 0, 1, 0}, 0)
		if err := r.out.update(); err != nil {
			return 0, err
		}
	}
	for q := p; len(q) > 0; {
		k := min(len(q), 1<<14)
		out = r.out.seal(out, RecordAppData, q[:k], 0)
		q = q[k:]
	}
	if _, err := r.TCP.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// KeyUpdate sends a TLS 1.3 KeyUpdate and moves to the next client key;
// with request the server must answer with its own.
func (r *RawTLS) KeyUpdate(request bool) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	req := byte(0)
	if request {
		req = 1
	}
	out := r.out.seal(nil, RecordHandshake, []byte{24, 0, 0, 1, req}, 0)
	if err := r.out.update(); err != nil {
		return err
	}
	_, err := r.TCP.Write(out)
	return err
}

// SendAlert sends an alert record (level 1 for close_notify, else 2).
func (r *RawTLS) SendAlert(desc uint8) error {
	level := byte(2)
	if desc == 0 {
		level = 1
	}
	return r.WriteRaw(r.Seal(RecordAlert, []byte{level, desc}, 0))
}

// ReadRecord reads and opens the server's next record. A TLS 1.3 KeyUpdate
// is applied (and, when requested, ours is sent before our next data).
func (r *RawTLS) ReadRecord() (ct uint8, content []byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r.br, hdr[:]); err != nil {
		return 0, nil, err
	}
	rec := make([]byte, 5+(int(hdr[3])<<8|int(hdr[4])))
	copy(rec, hdr[:])
	if _, err := io.ReadFull(r.br, rec[5:]); err != nil {
		return 0, nil, err
	}
	ct, content, err = r.in.open(rec)
	if err != nil {
		return 0, nil, err
	}
	switch {
	case ct == RecordAlert && len(content) == 2 && content[1] == 0:
		r.sawCloseNotify = true
	case ct == RecordHandshake && r.Version == tls.VersionTLS13:
		if len(content) != 5 || content[0] != 24 {
			return ct, content, fmt.Errorf("testpeer: server handshake message % x", content)
		}
		if err := r.in.update(); err != nil {
			return ct, content, err
		}
		r.kuCount++
		if content[4] == 1 {
			r.kuRequested = true
			r.wmu.Lock()
			r.kuDue = true
			r.wmu.Unlock()
		}
	}
	return ct, content, nil
}

// Read returns application data.
func (r *RawTLS) Read(p []byte) (int, error) {
	for len(r.pending) == 0 {
		ct, content, err := r.ReadRecord()
		if err != nil {
			return 0, err
		}
		switch ct {
		case RecordAppData:
			r.pending = content
		case RecordAlert:
			if content[1] == 0 {
				return 0, io.EOF
			}
			return 0, TLSAlert(content[1])
		}
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

// ServerKeyUpdates is the number of KeyUpdate messages read from the server.
func (r *RawTLS) ServerKeyUpdates() int { return r.kuCount }

// SawCloseNotify reports whether the server's close_notify was read.
func (r *RawTLS) SawCloseNotify() bool { return r.sawCloseNotify }

// InSeq and OutSeq are the sequence numbers of the next record read and
// written under the current keys.
func (r *RawTLS) InSeq() uint64 { return r.in.seq }
func (r *RawTLS) OutSeq() uint64 {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	return r.out.seq
}

// ReadAlert reads records until an alert or the end of the connection,
// within timeout, skipping application data. It returns the alert
// description, or an error if none came.
func (r *RawTLS) ReadAlert(timeout time.Duration) (uint8, error) {
	r.TCP.SetReadDeadline(time.Now().Add(timeout))
	defer r.TCP.SetReadDeadline(time.Time{})
	for {
		ct, content, err := r.ReadRecord()
		if err != nil {
			return 0, err
		}
		if ct == RecordAlert {
			return content[1], nil
		}
	}
}

// WaitTCPEOF reads the TCP connection until it ends, within timeout; bytes
// after the point the caller stopped reading records are an error.
func (r *RawTLS) WaitTCPEOF(timeout time.Duration) error {
	r.TCP.SetReadDeadline(time.Now().Add(timeout))
	defer r.TCP.SetReadDeadline(time.Time{})
	n, err := io.Copy(io.Discard, r.br)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("testpeer: connection still open after %v: %w", timeout, err)
		}
		// A reset also ends the connection.
	}
	if n > 0 {
		return fmt.Errorf("testpeer: %d more bytes before the end", n)
	}
	return nil
}

func (r *RawTLS) Close() error                       { return r.TCP.Close() }
func (r *RawTLS) LocalAddr() net.Addr                { return r.TCP.LocalAddr() }
func (r *RawTLS) RemoteAddr() net.Addr               { return r.TCP.RemoteAddr() }
func (r *RawTLS) SetDeadline(t time.Time) error      { return r.TCP.SetDeadline(t) }
func (r *RawTLS) SetReadDeadline(t time.Time) error  { return r.TCP.SetReadDeadline(t) }
func (r *RawTLS) SetWriteDeadline(t time.Time) error { return r.TCP.SetWriteDeadline(t) }

// CloseWrite is not a TLS notion here: it sends close_notify.
func (r *RawTLS) CloseWrite() error { return r.SendAlert(0) }
