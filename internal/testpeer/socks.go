package testpeer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// SOCKS5Dial connects to target ("host:port") through the SOCKS5 proxy at
// proxyAddr with CONNECT and no authentication. The handshake is bounded by
// ctx; the returned connection has no deadline.
func SOCKS5Dial(ctx context.Context, proxyAddr, target string) (*net.TCPConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, err
	}
	conn := c.(*net.TCPConn)
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
	}
	if err := socks5Handshake(conn, target); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

func socks5Handshake(conn io.ReadWriter, target string) error {
	addr, err := EncodeSOCKSAddr(target)
	if err != nil {
		return err
	}
	if _, err := conn.Write([]byte{5, 1, 0}); err != nil {
		return err
	}
	var rep [4]byte
	if _, err := io.ReadFull(conn, rep[:2]); err != nil {
		return fmt.Errorf("testpeer: socks5 method reply: %w", err)
	}
	if rep[0] != 5 || rep[1] != 0 {
		return fmt.Errorf("testpeer: socks5 method refused: % x", rep[:2])
	}
	req := append([]byte{5, 1, 0}, addr...)
	if _, err := conn.Write(req); err != nil {
		return err
	}
	if _, err := io.ReadFull(conn, rep[:4]); err != nil {
		return fmt.Errorf("testpeer: socks5 connect reply: %w", err)
	}
	if rep[0] != 5 || rep[1] != 0 {
		return fmt.Errorf("testpeer: socks5 connect failed: reply %d", rep[1])
	}
	var skip int
	switch rep[3] {
	case 1:
		skip = 4 + 2
	case 4:
		skip = 16 + 2
	case 3:
		var l [1]byte
		if _, err := io.ReadFull(conn, l[:]); err != nil {
			return err
		}
		skip = int(l[0]) + 2
	default:
		return errors.New("testpeer: socks5 bad bound address")
	}
	_, err = io.ReadFull(conn, make([]byte, skip))
	return err
}

// WaitSOCKSReady fetches 16 bytes from origin through the SOCKS5 proxy until
// it works or timeout passes. ss-local accepts SOCKS before its plugin
// listens and answers CONNECT before it reaches the server, so a successful
// CONNECT alone proves nothing.
func WaitSOCKSReady(socks string, origin *Origin, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			c, err := SOCKS5Dial(ctx, socks, origin.Addr)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Second))
			_, n, err := HTTPGetSHA256(c, origin.Addr, "/bytes/16")
			if err == nil && n != 16 {
				err = fmt.Errorf("testpeer: %d bytes, want 16", n)
			}
			return err
		}()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testpeer: SOCKS5 %s not ready after %v: %w", socks, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
