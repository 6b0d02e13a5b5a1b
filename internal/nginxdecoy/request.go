package nginxdecoy

import "bytes"

// What a caller that answers some requests itself (the gateway's documents)
// needs to know of a request Feed has reached a verdict on.

// Method is the request's method if nginx tells it apart ("GET", "HEAD",
// "POST", "TRACE", "CONNECT"), else "".
func (p *Parser) Method() string {
	switch p.method {
	case methodGET:
		return "GET"
	case methodHEAD:
		return "HEAD"
	case methodPOST:
		return "POST"
	case methodTRACE:
		return "TRACE"
	case methodCONNECT:
		return "CONNECT"
	}
	return ""
}

// HTTP09 reports a request line without a version (HTTP/0.9).
func (p *Parser) HTTP09() bool { return p.http09 }

// Target is the request target of an origin-form request ("/path?query")
// in b, the buffer Feed parsed; nil for an absolute URI ("http://host/…").
func (p *Parser) Target(b []byte) []byte {
	if p.hostStart >= 0 || p.uriStart < 0 || p.uriEnd > len(b) || p.uriStart > p.uriEnd {
		return nil
	}
	return b[p.uriStart:p.uriEnd]
}

// HeaderStart is the offset in b of the header block's first line (just past
// the request line), for a caller that reads headers nginx does not keep.
// The parser has checked every line's syntax.
func (p *Parser) HeaderStart(b []byte) int {
	i := p.uriEnd
	for i < len(b) && b[i] != '\n' {
		i++
	}
	return i + 1
}

// Header returns the value of the header name (any case) in b, the buffer
// Feed parsed, trimmed of spaces and tabs, and how many times the header
// occurs; the value is the first one's.
func (p *Parser) Header(b []byte, name string) (value []byte, count int) {
	for i := p.HeaderStart(b); i < len(b); {
		end := i
		for end < len(b) && b[end] != '\n' {
			end++
		}
		line := b[i:end]
		i = end + 1
		if len(line) > len(name) && line[len(name)] == ':' && bytes.EqualFold(line[:len(name)], []byte(name)) {
			if count == 0 {
				value = bytes.Trim(line[len(name)+1:], " \t\r")
			}
			count++
		}
	}
	return value, count
}

// Bearer returns the token of an "Authorization: Bearer <token>" value
// (the scheme in any case), or nil for another scheme, an empty token or
// one longer than max.
func Bearer(v []byte, max int) []byte {
	const scheme = "bearer "
	if len(v) <= len(scheme) || !bytes.EqualFold(v[:len(scheme)], []byte(scheme)) {
		return nil
	}
	tok := bytes.Trim(v[len(scheme):], " \t")
	if len(tok) == 0 || len(tok) > max {
		return nil
	}
	return tok
}
