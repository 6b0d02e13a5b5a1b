package tls13

import "net"

// HandshakeConn wraps the raw connection given to tls.Server so that no Read
// returns bytes past the end of the TLS record being read. crypto/tls reads
// ahead into its own buffer; through this wrapper it stops exactly after the
// client's Finished record, so when Handshake returns the next byte on the
// socket is the first application record (sequence number 0) and nothing is
// stranded inside the tls.Conn. Use it for the handshake only.
type HandshakeConn struct {
	net.Conn
	hdr    [RecordHeaderLen]byte
	hn     int // header bytes seen of the current record
	remain int // body bytes left in the current record
}

// NewHandshakeConn wraps c.
func NewHandshakeConn(c net.Conn) *HandshakeConn { return &HandshakeConn{Conn: c} }

// Read reads at most up to the end of the current record header or body.
func (c *HandshakeConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.remain == 0 {
		if max := RecordHeaderLen - c.hn; len(p) > max {
			p = p[:max]
		}
		n, err := c.Conn.Read(p)
		copy(c.hdr[c.hn:], p[:n])
		c.hn += n
		if c.hn == RecordHeaderLen {
			c.hn = 0
			c.remain = int(c.hdr[3])<<8 | int(c.hdr[4])
		}
		return n, err
	}
	if len(p) > c.remain {
		p = p[:c.remain]
	}
	n, err := c.Conn.Read(p)
	c.remain -= n
	return n, err
}
