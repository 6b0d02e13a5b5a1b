package testpeer

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
)

// HTTPGetSHA256 sends one GET for path to host over rw (any byte stream that
// ends at the origin, e.g. an SSConn) and returns the SHA-256 and length of
// the response body.
func HTTPGetSHA256(rw io.ReadWriter, host, path string) (sum string, n int64, err error) {
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host)
	if _, err := io.WriteString(rw, req); err != nil {
		return "", 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(rw, 64<<10), nil)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("testpeer: GET %s: %s", path, resp.Status)
	}
	h := sha256.New()
	n, err = io.CopyBuffer(h, resp.Body, make([]byte, 64<<10))
	if err != nil {
		return "", n, err
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return "", n, fmt.Errorf("testpeer: body %d bytes, want %d", n, resp.ContentLength)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// HTTPPostSHA256 uploads length bytes of body to the origin's /upload over
// rw and returns the origin's hash and length of what it received.
func HTTPPostSHA256(rw io.ReadWriter, host string, body io.Reader, length int64) (sum string, n int64, err error) {
	req := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n", host, length)
	if _, err := io.WriteString(rw, req); err != nil {
		return "", 0, err
	}
	// Big writes make big chunks and big WebSocket messages: fewer syscalls.
	if _, err := io.CopyBuffer(rw, io.LimitReader(body, length), make([]byte, 128<<10)); err != nil {
		return "", 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(rw), nil)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if err != nil {
		return "", 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("testpeer: POST /upload: %s: %s", resp.Status, b)
	}
	return ParseUploadAnswer(string(b))
}
