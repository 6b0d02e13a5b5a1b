package tls13

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// lateConn delays every Read so that the client's Finished and its first
// application record are both waiting in the socket when crypto/tls reads.
type lateConn struct{ net.Conn }

func (c lateConn) Read(p []byte) (int, error) {
	time.Sleep(10 * time.Millisecond)
	return c.Conn.Read(p)
}

// TestHandshakeConnLeavesFirstRecord: a client that writes right after its
// Finished must not lose its first record inside crypto/tls's read buffer.
func TestHandshakeConnLeavesFirstRecord(t *testing.T) {
	for _, wrap := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := tls.Dial("tcp", ln.Addr().String(), goClientConfig())
			if err != nil {
				return
			}
			defer c.Close()
			c.Write([]byte("first"))
			io.Copy(io.Discard, c)
		}()
		raw, err := ln.Accept()
		ln.Close()
		if err != nil {
			t.Fatal(err)
		}
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		kl := new(keyLog)
		var hc net.Conn = lateConn{raw}
		if wrap {
			hc = NewHandshakeConn(hc)
		}
		tc := tls.Server(hc, &tls.Config{Certificates: []tls.Certificate{serverCert(t)},
			MinVersion: tls.VersionTLS13, SessionTicketsDisabled: true, KeyLogWriter: kl})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		o, err := NewOpener(tc.ConnectionState().CipherSuite, kl.secrets["CLIENT_TRAFFIC_SECRET_0"])
		if err != nil {
			t.Fatal(err)
		}
		raw.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		buf := make([]byte, MaxRecordLen)
		_, err = io.ReadFull(raw, buf[:RecordHeaderLen])
		var got []byte
		if err == nil {
			n, _ := RecordLen(buf)
			if _, err = io.ReadFull(raw, buf[RecordHeaderLen:n]); err == nil {
				got, _, err = o.Open(buf[:n])
			}
		}
		raw.Close()
		if wrap {
			if err != nil || string(got) != "first" {
				t.Fatalf("with HandshakeConn: %q, %v", got, err)
			}
		} else {
			t.Logf("without HandshakeConn the first record was %q, %v (crypto/tls read ahead: %v)", got, err, err != nil)
		}
	}
}
