package redisstore

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
)

// TestRedissURL connects through TLS (rediss://) to a redis-server with a
// self-signed certificate, trusted through WithTLS.
func TestRedissURL(t *testing.T) {
	tc := testpeer.NewCert(t, testpeer.CertSpec{
		IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, NotAfter: time.Now().Add(time.Hour), Leaf: true,
	})
	port := testpeer.StartRedis(t, testpeer.RedisSpec{TLS: tc, Password: "s3cret"}).Port

	roots := tc.Pool
	url := fmt.Sprintf("rediss://:s3cret@127.0.0.1:%d/2", port)
	var s *Store
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err = New(context.Background(), url, WithTLS(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("New over TLS: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer s.Close()
	tok := store.Token{ID: store.NewID(), Hash: store.HashToken("tls")}
	if err := s.CreateToken(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetTokenByHash(context.Background(), tok.Hash); err != nil {
		t.Fatal(err)
	}

	// Without trusting the certificate the store refuses to connect.
	if _, err := New(context.Background(), url); err == nil {
		t.Fatal("connected to an untrusted certificate")
	}
	// A wrong password is not shown in the error.
	_, err = New(context.Background(), fmt.Sprintf("rediss://:wrongpw@127.0.0.1:%d/2", port),
		WithTLS(&tls.Config{RootCAs: roots}))
	if err == nil || stringsContains(err.Error(), "wrongpw") {
		t.Fatalf("wrong password: err = %v", err)
	}
}
