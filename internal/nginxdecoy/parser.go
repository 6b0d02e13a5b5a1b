// Package nginxdecoy answers HTTP/1 requests exactly as Debian's nginx 1.22
// does with `server_tokens off` and `location / { return 404; }`: the same
// verdict on every request (Parser), the same status, headers in nginx's
// order, error pages and keep-alive behaviour (Pages), found by experiment
// against that nginx (e2e/decoy_nginx_test.go holds the gateway's decoy and
// a live nginx side by side). The gateway's built-in decoy and the control
// API's answers to strangers are both made here, so the two cannot drift
// apart. It imports nothing of ours.
//
// Parser reads one request the way nginx's HTTP/1 parser does: byte by
// byte, resumable as bytes arrive, deciding as early as nginx does (a bad
// method is refused before the line ends). It keeps offsets into the
// caller's buffer, never copies it, and allocates nothing.
package nginxdecoy

// nginx limits that show in its answers.
const (
	nginxLineMax  = 8192    // large_client_header_buffers 4 8k: one line must fit a buffer
	nginxMaxBody  = 1 << 20 // client_max_body_size 1m
	nginxKeepReqs = 1000    // keepalive_requests
)

// Answers that nginx shows as 400 with a page of their own.
const (
	StatusHeaderTooLarge = 494 // "400 Request Header Or Cookie Too Large"
	StatusPlainToHTTPS   = 497 // "400 The plain HTTP request was sent to HTTPS port"
)

// Methods the answer depends on.
const (
	methodOther uint8 = iota
	methodGET
	methodHEAD
	methodPOST
	methodTRACE
	methodCONNECT
)

// Parser states.
const (
	psStart uint8 = iota
	psMethod
	psSpBeforeURI
	psSchema
	psSchemaSlash
	psSchemaSlash2
	psHost
	psHostLiteral
	psPort
	psURI
	psSpAfterURI
	psH
	psHT
	psHTT
	psHTTP
	psFirstMajor
	psMajor
	psFirstMinor
	psMinor
	psSpAfterVersion
	psLineAlmostDone
	psHdrStart
	psHdrName
	psHdrSpBeforeValue
	psHdrValue
	psHdrSpAfterValue
	psHdrAlmostDone
	psHdrsAlmostDone
	psDone
)

// Connection header values (nginx looks for the substrings).
const (
	connDefault uint8 = iota
	connClose
	connKeepAlive
)

// Parser is nginx's view of one request. Reset it (zero value) for
// every request; Feed it the buffer from the request's first byte.
type Parser struct {
	state uint8
	pos   int // bytes of the buffer parsed
	line  int // offset of the line being parsed

	method           uint8
	uriStart, uriEnd int
	hostStart        int // host in an absolute URI, or -1
	hostEnd          int
	major, minor     int
	http09           bool

	nameStart, nameEnd int
	valStart, valEnd   int
	badName            bool // a header name nginx ignores (e.g. with '_')

	host, clen, te      bool // headers seen
	conn                uint8
	msie, msie6, chrome bool
	clenVal, teVal      [2]int // offsets of the values
	length              int64
	chunked             bool

	// Status is the verdict once Feed returns true: 0 for a well-formed
	// request (it gets the default answer, or may become a session),
	// otherwise the error nginx answers with.
	Status int
}

// Feed parses b[p.Len():] (b holds the request from its first byte and grows
// between calls). It returns true once nginx would answer: p.Len() is then
// the request's length (request line and headers). limit bounds the request;
// a request that reaches it unfinished is refused as too large.
func (p *Parser) Feed(b []byte, limit int) bool {
	if p.state == psStart && p.pos == 0 {
		p.hostStart = -1
	}
	for p.pos < len(b) {
		if p.pos-p.line >= nginxLineMax || p.pos >= limit {
			// The line (or the request) fills nginx's buffer unfinished.
			p.Status = StatusHeaderTooLarge
			if p.state < psHdrStart {
				p.Status = 414
			}
			p.state = psDone
			return true
		}
		ch := b[p.pos]
		p.pos++
		if st, done := p.step(b, ch); done {
			p.Status = st
			p.state = psDone
			return true
		}
	}
	return false
}

// step advances the state machine by one byte (at b[p.pos-1]). done means a
// verdict: status 0 is a complete, well-formed request.
func (p *Parser) step(b []byte, ch byte) (status int, done bool) {
	at := p.pos - 1
	switch p.state {
	case psStart:
		if ch == '\r' || ch == '\n' {
			p.line = p.pos // leading empty lines are skipped
			return 0, false
		}
		if !methodChar(ch) {
			return 400, true
		}
		p.line = at
		p.state = psMethod
	case psMethod:
		if ch == ' ' {
			p.method = methodOf(b[p.line:at])
			p.state = psSpBeforeURI
			return 0, false
		}
		if !methodChar(ch) {
			return 400, true
		}
	case psSpBeforeURI:
		switch {
		case ch == '/':
			p.uriStart = at
			p.state = psURI
		case ch == ' ':
		case lower(ch) >= 'a' && lower(ch) <= 'z':
			p.state = psSchema
		default:
			return 400, true
		}
	case psSchema:
		switch {
		case lower(ch) >= 'a' && lower(ch) <= 'z', ch >= '0' && ch <= '9', ch == '+', ch == '-', ch == '.':
		case ch == ':':
			p.state = psSchemaSlash
		default:
			return 400, true
		}
	case psSchemaSlash:
		if ch != '/' {
			return 400, true
		}
		p.state = psSchemaSlash2
	case psSchemaSlash2:
		if ch != '/' {
			return 400, true
		}
		p.hostStart = p.pos
		p.state = psHost
	case psHost, psHostLiteral, psPort:
		return p.hostByte(ch, at)
	case psURI:
		switch {
		case ch == ' ':
			p.uriEnd = at
			p.state = psSpAfterURI
		case ch == '\r':
			p.uriEnd = at
			p.http09 = true
			p.state = psLineAlmostDone
		case ch == '\n':
			p.uriEnd = at
			p.http09 = true
			return p.lineDone(b)
		case ch < 0x20 || ch == 0x7f:
			return 400, true
		}
	case psSpAfterURI:
		switch ch {
		case ' ':
		case 'H':
			p.state = psH
		case '\r':
			p.http09 = true
			p.state = psLineAlmostDone
		case '\n':
			p.http09 = true
			return p.lineDone(b)
		default:
			return 400, true
		}
	case psH, psHT, psHTT, psHTTP:
		want := "TTP/"[p.state-psH]
		if ch != want {
			return 400, true
		}
		p.state++
	case psFirstMajor:
		if ch < '1' || ch > '9' {
			return 400, true
		}
		p.major = int(ch - '0')
		if p.major > 1 {
			return 505, true
		}
		p.state = psMajor
	case psMajor:
		switch {
		case ch == '.':
			p.state = psFirstMinor
		case ch >= '0' && ch <= '9':
			p.major = p.major*10 + int(ch-'0')
			if p.major > 1 {
				return 505, true
			}
		default:
			return 400, true
		}
	case psFirstMinor:
		if ch < '0' || ch > '9' {
			return 400, true
		}
		p.minor = int(ch - '0')
		p.state = psMinor
	case psMinor:
		switch {
		case ch == '\r':
			p.state = psLineAlmostDone
		case ch == '\n':
			return p.lineDone(b)
		case ch == ' ':
			p.state = psSpAfterVersion
		case ch >= '0' && ch <= '9':
			p.minor = p.minor*10 + int(ch-'0')
			if p.minor > 99 {
				return 400, true
			}
		default:
			return 400, true
		}
	case psSpAfterVersion:
		switch ch {
		case ' ':
		case '\r':
			p.state = psLineAlmostDone
		case '\n':
			return p.lineDone(b)
		default:
			return 400, true
		}
	case psLineAlmostDone:
		if ch != '\n' {
			return 400, true
		}
		return p.lineDone(b)
	case psHdrStart:
		p.line = at
		switch {
		case ch == '\r':
			p.state = psHdrsAlmostDone
		case ch == '\n':
			return p.headersDone(b)
		case ch <= 0x20 || ch == 0x7f || ch == ':':
			return 400, true
		default:
			p.nameStart = at
			p.badName = !nameChar(ch)
			p.state = psHdrName
		}
	case psHdrName:
		switch {
		case ch == ':':
			p.nameEnd = at
			p.state = psHdrSpBeforeValue
		case ch == '\r':
			p.nameEnd, p.valStart, p.valEnd = at, at, at
			p.state = psHdrAlmostDone
		case ch == '\n':
			p.nameEnd, p.valStart, p.valEnd = at, at, at
			return p.headerDone(b)
		case ch <= 0x20 || ch == 0x7f:
			return 400, true
		case !nameChar(ch):
			p.badName = true
		}
	case psHdrSpBeforeValue:
		switch ch {
		case ' ':
		case '\r':
			p.valStart, p.valEnd = at, at
			p.state = psHdrAlmostDone
		case '\n':
			p.valStart, p.valEnd = at, at
			return p.headerDone(b)
		case 0:
			return 400, true
		default:
			p.valStart = at
			p.state = psHdrValue
		}
	case psHdrValue, psHdrSpAfterValue:
		switch ch {
		case ' ':
			if p.state == psHdrValue {
				p.valEnd = at
				p.state = psHdrSpAfterValue
			}
		case '\r':
			if p.state == psHdrValue {
				p.valEnd = at
			}
			p.state = psHdrAlmostDone
		case '\n':
			if p.state == psHdrValue {
				p.valEnd = at
			}
			return p.headerDone(b)
		case 0:
			return 400, true
		default:
			p.state = psHdrValue
		}
	case psHdrAlmostDone:
		switch ch {
		case '\n':
			return p.headerDone(b)
		case '\r':
		default:
			return 400, true
		}
	case psHdrsAlmostDone:
		if ch != '\n' {
			return 400, true
		}
		return p.headersDone(b)
	}
	return 0, false
}

// hostByte parses the host[:port] of an absolute URI.
func (p *Parser) hostByte(ch byte, at int) (int, bool) {
	switch p.state {
	case psHost:
		c := lower(ch)
		if c >= 'a' && c <= 'z' || ch >= '0' && ch <= '9' || ch == '.' || ch == '-' {
			return 0, false
		}
		if ch == '[' && at == p.hostStart {
			p.state = psHostLiteral
			return 0, false
		}
	case psHostLiteral:
		c := lower(ch)
		if c >= 'a' && c <= 'z' || ch >= '0' && ch <= '9' || ch != 0 && contains(":._~!$&'()*+,;=-", ch) {
			return 0, false
		}
		if ch == ']' {
			p.hostEnd = p.pos
			p.state = psPort
			return 0, false
		}
		return 400, true
	case psPort:
		if ch >= '0' && ch <= '9' {
			return 0, false
		}
	}
	if p.state == psHost {
		p.hostEnd = at
	}
	switch ch {
	case ':':
		if p.state == psHost {
			p.state = psPort
			return 0, false
		}
	case '/', '?':
		p.uriStart = at
		p.state = psURI
		return 0, false
	case ' ':
		p.uriStart, p.uriEnd = -1, -1 // the path is "/"
		p.state = psSpAfterURI
		return 0, false
	}
	return 400, true
}

// lineDone checks a complete request line as nginx does before it reads
// the headers: the URI, and HTTP/0.9's lack of headers.
func (p *Parser) lineDone(b []byte) (int, bool) {
	if p.uriStart >= 0 && !validPath(b[p.uriStart:p.uriEnd]) {
		return 400, true
	}
	if p.hostStart >= 0 && !validHost(b[p.hostStart:p.hostEnd]) {
		return 400, true
	}
	if p.http09 {
		if p.method != methodGET {
			return 400, true
		}
		return 0, true
	}
	p.state, p.line = psHdrStart, p.pos
	return 0, false
}

// headerDone applies one header line, as nginx does on reading it.
func (p *Parser) headerDone(b []byte) (int, bool) {
	p.state, p.line = psHdrStart, p.pos
	if p.badName {
		return 0, false // ignore_invalid_headers on
	}
	name, val := b[p.nameStart:p.nameEnd], b[p.valStart:p.valEnd]
	switch {
	case equalFold(name, "host"):
		if p.host || !validHost(val) {
			return 400, true
		}
		p.host = true
	case equalFold(name, "connection"):
		switch {
		case indexFold(val, "close") >= 0:
			p.conn = connClose
		case indexFold(val, "keep-alive") >= 0:
			p.conn = connKeepAlive
		}
	case equalFold(name, "user-agent"):
		if !p.msie && !p.chrome {
			p.userAgent(val)
		}
	case equalFold(name, "content-length"):
		if p.clen {
			return 400, true
		}
		p.clen, p.clenVal = true, [2]int{p.valStart, p.valEnd}
	case equalFold(name, "transfer-encoding"):
		if p.te {
			return 400, true
		}
		p.te, p.teVal = true, [2]int{p.valStart, p.valEnd}
	}
	return 0, false
}

// userAgent notes the browsers nginx treats apart: MSIE and Chrome get a
// padded error page, MSIE 4–6 no keep-alive after a POST.
func (p *Parser) userAgent(ua []byte) {
	if i := index(ua, "MSIE "); i >= 0 && i+7 < len(ua) {
		p.msie = true
		if ua[i+6] == '.' {
			switch ua[i+5] {
			case '4', '5':
				p.msie6 = true
			case '6':
				p.msie6 = index(ua[i+8:], "SV1") < 0
			}
		}
	}
	if index(ua, "Opera") >= 0 {
		p.msie, p.msie6 = false, false
		return
	}
	if !p.msie && index(ua, "Gecko/") < 0 && index(ua, "Chrome/") >= 0 {
		p.chrome = true
	}
}

// headersDone runs nginx's checks on the complete header block.
func (p *Parser) headersDone(b []byte) (int, bool) {
	if !p.host && p.minor >= 1 {
		return 400, true
	}
	if p.clen {
		n, ok := parseLength(b[p.clenVal[0]:p.clenVal[1]])
		if !ok {
			return 400, true
		}
		p.length = n
	}
	if p.te {
		if p.minor < 1 {
			return 400, true
		}
		if !equalFold(b[p.teVal[0]:p.teVal[1]], "chunked") {
			return 501, true
		}
		if p.clen {
			return 400, true
		}
		p.chunked = true
	}
	if p.method == methodCONNECT || p.method == methodTRACE {
		return 405, true
	}
	return 0, true
}

// keepAlive reports whether nginx keeps the connection after answering a
// well-formed request (before the status is taken into account).
func (p *Parser) keepAlive() bool {
	if p.http09 {
		return false
	}
	switch p.conn {
	case connClose:
		return false
	case connKeepAlive:
	default:
		if p.minor < 1 {
			return false
		}
	}
	return !(p.msie6 && p.method == methodPOST)
}

// HasBody reports whether a body follows the header block.
func (p *Parser) HasBody() bool { return p.chunked || p.length > 0 }

// Chunked reports a chunked body; Length is the Content-Length (0 if none).
func (p *Parser) Chunked() bool { return p.chunked }
func (p *Parser) Length() int64 { return p.length }

// Len is the number of bytes parsed: once Feed has returned true, the
// length of the request line and headers.
func (p *Parser) Len() int { return p.pos }

// Done reports whether the parser has reached a verdict.
func (p *Parser) Done() bool { return p.state == psDone }

// Decide ends parsing with the verdict status (0: the default answer),
// keeping what was read so far (the method, the browser, the version),
// as nginx does when it gives up on a request for a reason of its own.
func (p *Parser) Decide(status int) {
	p.Status = status
	p.state = psDone
}

func methodChar(ch byte) bool { return ch >= 'A' && ch <= 'Z' || ch == '_' || ch == '-' }

// nameChar is a header name byte nginx accepts (others make it ignore the
// header; '_' too, with underscores_in_headers off).
func nameChar(ch byte) bool {
	c := lower(ch)
	return c >= 'a' && c <= 'z' || ch >= '0' && ch <= '9' || ch == '-'
}

func methodOf(m []byte) uint8 {
	switch string(m) {
	case "GET":
		return methodGET
	case "HEAD":
		return methodHEAD
	case "POST":
		return methodPOST
	case "TRACE":
		return methodTRACE
	case "CONNECT":
		return methodCONNECT
	}
	return methodOther
}

// validPath reports whether nginx accepts a request path: %-escapes must be
// hex, and after decoding, "." and ".." segments must stay below the root.
// The query string is not looked at.
func validPath(u []byte) bool {
	depth := 0
	seg := 0 // bytes of the current segment; -1 before the first slash
	dots := 0
	end := func() bool {
		if seg == dots && dots == 2 {
			if depth == 0 {
				return false
			}
			depth--
		} else if seg > 0 && !(seg == 1 && dots == 1) {
			depth++
		}
		return true
	}
	for i := 0; i < len(u); i++ {
		ch := u[i]
		if ch == '?' || ch == '#' {
			break
		}
		if ch == '%' {
			if i+2 >= len(u) {
				return false
			}
			hi, ok1 := unhex(u[i+1])
			lo, ok2 := unhex(u[i+2])
			if !ok1 || !ok2 {
				return false
			}
			i += 2
			ch = hi<<4 | lo
			if ch == '?' || ch == '#' || ch == 0 || ch == '%' {
				seg++
				continue
			}
		}
		if ch == '/' {
			if !end() {
				return false
			}
			seg, dots = 0, 0
			continue
		}
		seg++
		if ch == '.' {
			dots++
		}
	}
	return end()
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case lower(c) >= 'a' && lower(c) <= 'f':
		return lower(c) - 'a' + 10, true
	}
	return 0, false
}

// validHost is nginx's check of a Host value (or an absolute URI's host).
func validHost(h []byte) bool {
	const (
		usual = iota
		literal
		rest
	)
	state, dot, n := usual, -2, len(h)
	for i, ch := range h {
		switch ch {
		case '.':
			if dot == i-1 {
				return false
			}
			dot = i
		case ':':
			if state == usual {
				n, state = i, rest
			}
		case '[':
			if i == 0 {
				state = literal
			}
		case ']':
			if state == literal {
				n, state = i+1, rest
			}
		case '/', 0:
			return false
		default:
			if ch < 0x20 || ch == 0x7f {
				return false
			}
		}
	}
	if dot == n-1 {
		n--
	}
	return n > 0
}

// parseLength is nginx's Content-Length: decimal digits only.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

// indexFold finds lowercase s in b, ignoring case.
func indexFold(b []byte, s string) int {
	for i := 0; i+len(s) <= len(b); i++ {
		if equalFold(b[i:i+len(s)], s) {
			return i
		}
	}
	return -1
}

func index(b []byte, s string) int {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return i
		}
	}
	return -1
}

func contains(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}

// ChunkSkipper discards a chunked body as nginx does while it answers.
// The zero value is at the body's start.
type ChunkSkipper struct {
	state uint8
	size  int64
}

const (
	ckSize uint8 = iota
	ckExt
	ckSizeLF
	ckData
	ckDataCR
	ckDataLF
	ckTrailer
	ckTrailerLine
	ckLastLF
	ckDone
)

// Skip consumes body bytes from b; it returns how many, and whether the
// body ended (ok false: not a valid chunked body, the connection is closed).
func (k *ChunkSkipper) Skip(b []byte) (n int, done, ok bool) {
	for n < len(b) {
		ch := b[n]
		switch k.state {
		case ckSize:
			if d, isHex := unhex(ch); isHex {
				if k.size > 1<<40 {
					return n, false, false
				}
				k.size = k.size<<4 | int64(d)
				break
			}
			switch ch {
			case ';', ' ', '\t':
				k.state = ckExt
			case '\r':
				k.state = ckSizeLF
			case '\n':
				k.state = k.afterSize()
			default:
				return n, false, false
			}
		case ckExt:
			switch ch {
			case '\r':
				k.state = ckSizeLF
			case '\n':
				k.state = k.afterSize()
			}
		case ckSizeLF:
			if ch != '\n' {
				return n, false, false
			}
			k.state = k.afterSize()
		case ckData:
			m := int64(len(b) - n)
			if m > k.size {
				m = k.size
			}
			k.size -= m
			n += int(m)
			if k.size == 0 {
				k.state = ckDataCR
			}
			continue
		case ckDataCR:
			switch ch {
			case '\r':
				k.state = ckDataLF
			case '\n':
				k.state = ckSize
			default:
				return n, false, false
			}
		case ckDataLF:
			if ch != '\n' {
				return n, false, false
			}
			k.state = ckSize
		case ckTrailer:
			switch ch {
			case '\r':
				k.state = ckLastLF
			case '\n':
				k.state = ckDone
				return n + 1, true, true
			default:
				k.state = ckTrailerLine
			}
		case ckTrailerLine:
			if ch == '\n' {
				k.state = ckTrailer
			}
		case ckLastLF:
			if ch != '\n' {
				return n, false, false
			}
			k.state = ckDone
			return n + 1, true, true
		}
		n++
	}
	return n, false, true
}

func (k *ChunkSkipper) afterSize() uint8 {
	if k.size == 0 {
		return ckTrailer
	}
	return ckData
}
