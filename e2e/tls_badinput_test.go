package e2e

import (
	"bytes"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// Alert descriptions (RFC 8446 §6, RFC 5246 §7.2).
const (
	alertUnexpectedMessage = 10
	alertBadRecordMAC      = 20
	alertRecordOverflow    = 22
	alertIllegalParameter  = 47
	alertDecodeError       = 50
	alertNoRenegotiation   = 100
)

// clientFrame is one masked binary frame carrying p.
func clientFrame(p []byte) []byte {
	var b bytes.Buffer
	f := ws.NewBinaryFrame(append([]byte(nil), p...))
	f.Header.Masked = true
	f.Header.Mask = ws.NewMask()
	ws.Cipher(f.Payload, f.Header.Mask, 0)
	ws.WriteFrame(&b, f)
	return b.Bytes()
}

// clientHelloBytes returns a real TLS ClientHello record as crypto/tls
// sends it.
func clientHelloBytes(t testing.TB) []byte {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go tls.Client(a, &tls.Config{ServerName: "localhost"}).Handshake()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [5]byte
	if _, err := b.Read(hdr[:]); err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, 5+(int(hdr[3])<<8|int(hdr[4])))
	copy(rec, hdr[:])
	for n := 5; n < len(rec); {
		k, err := b.Read(rec[n:])
		if err != nil {
			t.Fatal(err)
		}
		n += k
	}
	return rec
}

// TestTLSBadRecords: after a working upgrade and a first echo, a client
// sends a record that breaks a rule; it gets the alert RFC 8446 §6 (or RFC
// 5246 §7.2) names and the connection ends, while another session's 32 MiB
// transfer goes on intact, and nothing is left behind (sessions, goroutines).
func TestTLSBadRecords(t *testing.T) {
	const secret = "tls-bad-records"
	m := &countMetrics{}
	g, gw, cert := startTLSGateway(t, gateway.Config{Metrics: m, HandshakeTimeout: 3 * time.Second},
		map[string]string{secret: testpeer.EchoServer(t), "bystander": duplexPeer(t)})
	// A first session warms up lazily started goroutines.
	_, warm := dialRawWS(t, gw, cert, secret, tls.VersionTLS13)
	if err := echoPhase(warm, [][]byte{[]byte("warm")}, warm.CloseWrite); err != nil {
		t.Fatal(err)
	}
	warm.Close()
	waitSessions(t, g, 0)
	base := goroutineBaseline()

	// The bystander: a duplex transfer that runs through all the cases.
	by := dialWSS(t, gw, cert, "bystander", tls.VersionTLS13)
	byDone := make(chan error, 1)
	go func() { byDone <- duplexExchange(by, 77, 32<<20, 32<<20, false) }()

	hello := clientHelloBytes(t)
	type badCase struct {
		name    string
		version uint16
		alert   int // -1: no alert expected, only the end of the connection
		forge   func(raw *testpeer.RawTLS) []byte
	}
	data := func(raw *testpeer.RawTLS) []byte {
		return raw.Seal(testpeer.RecordAppData, clientFrame([]byte("payload")), 0)
	}
	cases := []badCase{
		{"CorruptTag", tls.VersionTLS13, alertBadRecordMAC, func(raw *testpeer.RawTLS) []byte {
			rec := data(raw)
			rec[len(rec)-1] ^= 0x40
			return rec
		}},
		{"CorruptBody", tls.VersionTLS13, alertBadRecordMAC, func(raw *testpeer.RawTLS) []byte {
			rec := data(raw)
			rec[7] ^= 1
			return rec
		}},
		{"HeaderVersionChanged", tls.VersionTLS13, alertBadRecordMAC, func(raw *testpeer.RawTLS) []byte {
			rec := data(raw)
			rec[2] = 1 // legacy_record_version is authenticated data
			return rec
		}},
		{"LengthOneShort", tls.VersionTLS13, alertBadRecordMAC, func(raw *testpeer.RawTLS) []byte {
			rec := data(raw)
			n := len(rec) - 5 - 1
			rec[3], rec[4] = byte(n>>8), byte(n)
			return rec
		}},
		{"ShorterThanTag", tls.VersionTLS13, alertBadRecordMAC, func(raw *testpeer.RawTLS) []byte {
			return []byte{23, 3, 3, 0, 5, 1, 2, 3, 4, 5}
		}},
		{"EmptyCiphertext", tls.VersionTLS13, alertBadRecordMAC, func(raw *testpeer.RawTLS) []byte {
			return []byte{23, 3, 3, 0, 0}
		}},
		{"ReplayedSequence", tls.VersionTLS13, alertBadRecordMAC, func(raw *testpeer.RawTLS) []byte {
			rec := data(raw)
			return append(rec, rec...)
		}},
		{"OversizedLength", tls.VersionTLS13, alertRecordOverflow, func(raw *testpeer.RawTLS) []byte {
			n := 1<<14 + 256 + 1
			return append([]byte{23, 3, 3, byte(n >> 8), byte(n)}, make([]byte, 1000)...)
		}},
		{"MaxLength", tls.VersionTLS13, alertRecordOverflow, func(raw *testpeer.RawTLS) []byte {
			return append([]byte{23, 3, 3, 0xff, 0xff}, make([]byte, 1000)...)
		}},
		{"OversizedPlaintext", tls.VersionTLS13, alertRecordOverflow, func(raw *testpeer.RawTLS) []byte {
			// Valid AEAD, but 16384 bytes of content + type + padding
			// is over the 2^14+1-byte inner plaintext limit.
			return raw.Seal(testpeer.RecordAppData, make([]byte, 1<<14), 1)
		}},
		{"OuterHandshake", tls.VersionTLS13, alertUnexpectedMessage, func(raw *testpeer.RawTLS) []byte {
			rec := data(raw)
			rec[0] = 22
			return rec
		}},
		{"OuterChangeCipherSpec", tls.VersionTLS13, alertUnexpectedMessage, func(raw *testpeer.RawTLS) []byte {
			return []byte{20, 3, 3, 0, 1, 1}
		}},
		{"OuterPlainAlert", tls.VersionTLS13, alertUnexpectedMessage, func(raw *testpeer.RawTLS) []byte {
			return []byte{21, 3, 3, 0, 2, 2, 40}
		}},
		{"InnerTypeUnknown", tls.VersionTLS13, alertUnexpectedMessage, func(raw *testpeer.RawTLS) []byte {
			return raw.Seal(99, []byte("x"), 0)
		}},
		{"InnerAllZeros", tls.VersionTLS13, alertUnexpectedMessage, func(raw *testpeer.RawTLS) []byte {
			return raw.Seal(0, nil, 10)
		}},
		{"InnerChangeCipherSpec", tls.VersionTLS13, alertUnexpectedMessage, func(raw *testpeer.RawTLS) []byte {
			return raw.Seal(20, []byte{1}, 0)
		}},
		{"PostHandshakeClientHello", tls.VersionTLS13, alertUnexpectedMessage, func(raw *testpeer.RawTLS) []byte {
			return raw.Seal(testpeer.RecordHandshake, hello[5:], 0)
		}},
		{"PostHandshakeFinished", tls.VersionTLS13, alertUnexpectedMessage, func(raw *testpeer.RawTLS) []byte {
			return raw.Seal(testpeer.RecordHandshake, append([]byte{20, 0, 0, 32}, make([]byte, 32)...), 0)
		}},
		{"KeyUpdateBadLength", tls.VersionTLS13, alertDecodeError, func(raw *testpeer.RawTLS) []byte {
			return raw.Seal(testpeer.RecordHandshake, []byte{24, 0, 0, 2, 0, 0}, 0)
		}},
		{"KeyUpdateBadRequest", tls.VersionTLS13, alertIllegalParameter, func(raw *testpeer.RawTLS) []byte {
			return raw.Seal(testpeer.RecordHandshake, []byte{24, 0, 0, 1, 2}, 0)
		}},
		{"KeyUpdateThenDataInRecord", tls.VersionTLS13, alertUnexpectedMessage, func(raw *testpeer.RawTLS) []byte {
			return raw.Seal(testpeer.RecordHandshake, []byte{24, 0, 0, 1, 0, 24}, 0)
		}},
		{"AlertTooLong", tls.VersionTLS13, alertDecodeError, func(raw *testpeer.RawTLS) []byte {
			return raw.Seal(testpeer.RecordAlert, []byte{2, 40, 0}, 0)
		}},
		{"TooManyEmptyRecords", tls.VersionTLS13, alertUnexpectedMessage, func(raw *testpeer.RawTLS) []byte {
			var b []byte
			for range 40 {
				b = append(b, raw.Seal(testpeer.RecordAppData, nil, 0)...)
			}
			return b
		}},
		{"ClientFatalAlert", tls.VersionTLS13, -1, func(raw *testpeer.RawTLS) []byte {
			return raw.Seal(testpeer.RecordAlert, []byte{2, 40}, 0) // handshake_failure: no answer
		}},
		{"TLS12Renegotiation", tls.VersionTLS12, alertNoRenegotiation, func(raw *testpeer.RawTLS) []byte {
			return raw.Seal(testpeer.RecordHandshake, hello[5:], 0)
		}},
		{"TLS12CorruptTag", tls.VersionTLS12, alertBadRecordMAC, func(raw *testpeer.RawTLS) []byte {
			rec := data(raw)
			rec[len(rec)-1] ^= 0x40
			return rec
		}},
		{"TLS12ChangeCipherSpec", tls.VersionTLS12, alertUnexpectedMessage, func(raw *testpeer.RawTLS) []byte {
			return []byte{20, 3, 3, 0, 1, 1}
		}},
		{"TLS12OversizedLength", tls.VersionTLS12, alertRecordOverflow, func(raw *testpeer.RawTLS) []byte {
			n := 1<<14 + 2048 + 1
			return append([]byte{23, 3, 3, byte(n >> 8), byte(n)}, make([]byte, 1000)...)
		}},
	}
	t.Run("Cases", func(t *testing.T) {
		for _, bc := range cases {
			t.Run(bc.name, func(t *testing.T) {
				t.Parallel()
				raw, c := dialRawWS(t, gw, cert, secret, bc.version)
				if err := echoPhase(c, [][]byte{[]byte("before")}, nil); err != nil {
					t.Fatal(err)
				}
				if err := raw.WriteRaw(bc.forge(raw)); err != nil {
					t.Fatal(err)
				}
				if bc.alert < 0 {
					if a, err := raw.ReadAlert(8 * time.Second); err == nil {
						t.Fatalf("alert %d after the client's fatal alert, want none", a)
					}
					return
				}
				if err := expectAlert(raw, uint8(bc.alert)); err != nil {
					t.Fatal(err)
				}
			})
		}
	})
	select {
	case err := <-byDone:
		if err != nil {
			t.Fatalf("bystander transfer: %v (session ends:%s)", err, m.endsString())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("bystander transfer still running after 60 s")
	}
	by.Close()
	waitSessions(t, g, 0)
	waitGoroutines(t, base, goroutineTolerance, "after bad records")
	t.Logf("session ends:%s", m.endsString())
}

// TestTLSGarbageInsteadOfClientHello: what is not a ClientHello ends the
// connection quickly. As on nginx, bytes that could start a TLS record
// (0x16, or SSLv2's high bit) get at most a TLS alert; anything else is
// taken for plain HTTP and gets nginx's 400 in plaintext ("The plain HTTP
// request was sent to HTTPS port" for a well-formed request). Nothing is
// left behind.
func TestTLSGarbageInsteadOfClientHello(t *testing.T) {
	g, gw, _ := startTLSGateway(t, gateway.Config{HandshakeTimeout: 2 * time.Second},
		map[string]string{"garbage-secret": testpeer.EchoServer(t)})
	base := goroutineBaseline()
	hello := clientHelloBytes(t)
	random := randomBytes(1000)
	random[0] |= 0x80
	const toHTTPS, badRequest = "The plain HTTP request was sent to HTTPS port", "<title>400 Bad Request</title>"
	probes := []struct {
		name string
		b    []byte
		http string // plaintext answer wanted ("": at most an alert)
	}{
		{"RandomBytes", random, ""},
		{"HTTPGet", []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), toHTTPS},
		{"HTTPUpgrade", []byte(upgradeRequest("/garbage-secret/tcp")), toHTTPS},
		{"HandshakeHeaderGarbageBody", append([]byte{22, 3, 1, 1, 0}, randomBytes(256)...), ""},
		{"ClientHelloCorrupted", func() []byte {
			b := append([]byte(nil), hello...)
			for i := 9; i < len(b); i += 7 {
				b[i] ^= 0x5a
			}
			return b
		}(), ""},
		{"SSLv2Hello", append([]byte{0x80, 0x2e, 0x01, 0x00, 0x02}, randomBytes(0x2b)...), ""},
		{"ApplicationDataFirst", append([]byte{23, 3, 3, 0, 64}, randomBytes(64)...), badRequest},
		{"HugeRecordLength", append([]byte{22, 3, 1, 0xff, 0xff}, randomBytes(70000)...), ""},
	}
	var wg sync.WaitGroup
	for _, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", gw, 5*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			start := time.Now()
			c.Write(p.b)
			got, err := readUntilClosed(c, 5*time.Second)
			if err != nil {
				t.Errorf("%s: %v after %d bytes", p.name, err, len(got))
				return
			}
			switch {
			case p.http != "":
				if !bytes.HasPrefix(got, []byte("HTTP/1.1 400 Bad Request\r\n")) || !bytes.Contains(got, []byte(p.http)) {
					t.Errorf("%s: answer %q, want nginx's 400 with %q", p.name, got, p.http)
				}
			case bytes.Contains(got, []byte("HTTP/")) || len(got) > 7:
				t.Errorf("%s: answer %q, want at most one TLS alert", p.name, got)
			}
			t.Logf("%s: closed after %v with %d bytes % x", p.name, time.Since(start).Round(time.Millisecond), len(got), got)
		}()
	}
	wg.Wait()
	// Plain HTTP answers end with a lingering close, which sees the
	// client's close a moment later.
	deadline := time.Now().Add(waitFor)
	for g.Handshakes() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := g.Handshakes(); n != 0 {
		t.Errorf("%d handshakes still in progress", n)
	}
	waitGoroutines(t, base, goroutineTolerance, "after garbage handshakes")
}
