package nginxdecoy

import (
	"strconv"
	"sync/atomic"
	"time"
)

// Config is the decoy's one default answer. The zero value is nginx's:
// Server "nginx", 404 with nginx's page.
type Config struct {
	// Server is the Server header and the name on the error pages
	// ("" → "nginx").
	Server string
	// Status is the default answer's status: 200 or a code StatusValid
	// accepts (0 → 404).
	Status int
	// Body replaces the default answer's page (nil → nginx's page for
	// Status, or an empty body for 200).
	Body []byte
	// ContentType is the default answer's ("" → "text/html", or
	// "text/plain" for an empty 200).
	ContentType string
}

// Pages holds the answers' fixed parts, built once by New; it is read-only
// afterwards, so one Pages serves any number of goroutines.
type Pages struct {
	server      string
	status      int    // the default answer's status
	body        []byte // and body
	ctype       string
	builtinBody bool // the default body is nginx's page (padded for MSIE/Chrome)
	closes      bool // the default status ends the connection, as in nginx
	pages       map[int][]byte
}

// nginxPadding follows nginx's error pages for MSIE and Chrome.
const nginxPadding = "<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n" +
	"<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n" +
	"<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n" +
	"<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n" +
	"<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n" +
	"<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n"

// nginxReasons are nginx 1.22's reason phrases (ngx_http_status_lines),
// which its error pages repeat; nginx has a page for every 4xx and 5xx here.
var nginxReasons = map[int]string{
	200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 206: "Partial Content",
	301: "Moved Permanently", 302: "Moved Temporarily", 303: "See Other", 304: "Not Modified",
	307: "Temporary Redirect", 308: "Permanent Redirect",
	400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
	404: "Not Found", 405: "Not Allowed", 406: "Not Acceptable", 408: "Request Time-out",
	409: "Conflict", 410: "Gone", 411: "Length Required", 412: "Precondition Failed",
	413: "Request Entity Too Large", 414: "Request-URI Too Large", 415: "Unsupported Media Type",
	416: "Requested Range Not Satisfiable", 421: "Misdirected Request", 429: "Too Many Requests",
	500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
	503: "Service Temporarily Unavailable", 504: "Gateway Time-out", 505: "HTTP Version Not Supported",
	507: "Insufficient Storage",
}

// nginxReason is nginx's reason phrase for a status the decoy sends.
func nginxReason(code int) string {
	return nginxReasons[shownStatus(code)]
}

// StatusValid reports whether code can be Config.Status: 200 (for
// a custom body) or a 4xx/5xx for which nginx has its own reason phrase and
// error page. Other codes would need a phrase nginx never sends, or headers
// (Location, Content-Range) or an empty body the decoy does not give.
func StatusValid(code int) bool {
	return code == 200 || code >= 400 && code <= 599 && nginxReasons[code] != ""
}

// shownStatus is the status on the wire.
func shownStatus(code int) int {
	if code == StatusHeaderTooLarge || code == StatusPlainToHTTPS {
		return 400
	}
	return code
}

// nginxPage is nginx's built-in page for a status.
func nginxPage(code int, server string) []byte {
	title := strconv.Itoa(shownStatus(code)) + " " + nginxReason(code)
	h1, extra := title, ""
	switch code {
	case StatusHeaderTooLarge:
		extra = "Request Header Or Cookie Too Large"
	case StatusPlainToHTTPS:
		extra = "The plain HTTP request was sent to HTTPS port"
	}
	if extra != "" {
		title = "400 " + extra
		extra = "<center>" + extra + "</center>\r\n"
	}
	return []byte("<html>\r\n<head><title>" + title + "</title></head>\r\n<body>\r\n<center><h1>" + h1 +
		"</h1></center>\r\n" + extra + "<hr><center>" + server + "</center>\r\n</body>\r\n</html>\r\n")
}

// New builds the pages of cfg. Check cfg.Status with StatusValid first:
// another code gets a page without a reason phrase.
func New(cfg Config) *Pages {
	d := &Pages{server: cfg.Server, status: cfg.Status, body: cfg.Body, ctype: cfg.ContentType, pages: map[int][]byte{}}
	if d.server == "" {
		d.server = "nginx"
	}
	if d.status == 0 {
		d.status = 404
	}
	for _, code := range []int{400, 404, 405, 413, 414, StatusHeaderTooLarge, StatusPlainToHTTPS, 501, 505} {
		d.pages[code] = nginxPage(code, d.server)
	}
	// ngx_http_special_response_handler turns keep-alive off for these.
	switch d.status {
	case 400, 413, 414, 500, 501:
		d.closes = true
	}
	switch {
	case d.body == nil && d.status == 200:
		// nginx has no page for 200: "return 200;" sends an empty
		// text/plain body (its default_type).
		d.body = []byte{}
		if d.ctype == "" {
			d.ctype = "text/plain"
		}
	case d.body == nil:
		d.pages[d.status] = nginxPage(d.status, d.server)
		d.body = d.pages[d.status]
		d.builtinBody = true
	}
	if d.ctype == "" {
		d.ctype = "text/html"
	}
	return d
}

// Answer is one response decided by the emulation.
type Answer struct {
	Status    int  // 0: the default answer
	KeepAlive bool // Connection: keep-alive (else close)
	Head      bool // headers only
	HTTP09    bool // body only, no status line or headers
	Pad       bool // MSIE/Chrome padding after a built-in error page
}

// answerFor decides nginx's answer to a parsed request. n is the number of
// requests answered on the connection before this one.
func answerFor(p *Parser, n int, plainToHTTPS bool) Answer {
	a := Answer{Status: p.Status, Head: p.method == methodHEAD, HTTP09: p.http09, Pad: p.msie || p.chrome}
	if a.Status == 0 {
		if plainToHTTPS {
			a.Status = StatusPlainToHTTPS
			return a
		}
		a.KeepAlive = p.keepAlive() && n+1 < nginxKeepReqs
		if p.length > nginxMaxBody {
			a.Status, a.KeepAlive = 413, false
		}
	}
	return a
}

// Answer decides nginx's answer to a request p has reached a verdict on:
// answerFor with the default status's keep-alive rule. n is the number of
// requests answered on the connection before this one; plainToHTTPS says
// the request came in plain on a TLS port.
func (d *Pages) Answer(p *Parser, n int, plainToHTTPS bool) Answer {
	a := answerFor(p, n, plainToHTTPS)
	if a.Status == 0 && d.closes {
		a.KeepAlive = false
	}
	return a
}

// Size bounds the length of the answer's bytes.
func (d *Pages) Size(a Answer) int {
	return len(d.bodyOf(a)) + len(nginxPadding) + 256 + len(d.server) + len(d.ctype)
}

func (d *Pages) bodyOf(a Answer) []byte {
	if a.Status == 0 {
		return d.body
	}
	return d.pages[a.Status]
}

// Head is the status line's and the header block's variable parts of an
// answer: the status code and reason phrase on the wire, the Server and
// Content-Type values.
func (d *Pages) Head(a Answer) (code int, reason, server, ctype string) {
	status, ctype := a.Status, "text/html"
	if status == 0 {
		status, ctype = d.status, d.ctype
	}
	return shownStatus(status), nginxReason(status), d.server, ctype
}

// padded reports whether the MSIE/Chrome padding follows the answer's body.
func (d *Pages) padded(a Answer) bool {
	if a.Status == 0 {
		return a.Pad && d.builtinBody && d.status >= 400
	}
	return a.Pad
}

// AppendBody appends the answer's body as nginx sends it (padding
// included); its length is the Content-Length, also of a HEAD answer,
// which sends none of it.
func (d *Pages) AppendBody(dst []byte, a Answer) []byte {
	dst = append(dst, d.bodyOf(a)...)
	if d.padded(a) {
		dst = append(dst, nginxPadding...)
	}
	return dst
}

// AppendAnswer appends the answer's bytes: status line, header block in
// nginx's order (Server, Date, Content-Type, Content-Length, Connection)
// and body.
func (d *Pages) AppendAnswer(dst []byte, a Answer) []byte {
	if a.HTTP09 {
		return d.AppendBody(dst, a)
	}
	code, reason, server, ctype := d.Head(a)
	n := len(d.bodyOf(a))
	if d.padded(a) {
		n += len(nginxPadding)
	}
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	dst = append(dst, reason...)
	dst = append(dst, "\r\nServer: "...)
	dst = append(dst, server...)
	dst = append(dst, "\r\nDate: "...)
	dst = AppendDate(dst)
	dst = append(dst, "\r\nContent-Type: "...)
	dst = append(dst, ctype...)
	dst = append(dst, "\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(n), 10)
	if a.KeepAlive {
		dst = append(dst, "\r\nConnection: keep-alive\r\n\r\n"...)
	} else {
		dst = append(dst, "\r\nConnection: close\r\n\r\n"...)
	}
	if !a.Head {
		dst = d.AppendBody(dst, a)
	}
	return dst
}

// A Date header value, made at most once a second.
type httpDate struct {
	sec int64
	b   [29]byte
}

var dateNow atomic.Pointer[httpDate]

const httpDateLayout = "Mon, 02 Jan 2006 15:04:05 GMT"

// AppendDate appends the current time as nginx writes it in a Date header
// ("Mon, 02 Jan 2006 15:04:05 GMT"), made at most once a second.
func AppendDate(dst []byte) []byte {
	now := time.Now()
	s := now.Unix()
	d := dateNow.Load()
	if d == nil || d.sec != s {
		d = &httpDate{sec: s}
		now.UTC().AppendFormat(d.b[:0], httpDateLayout)
		dateNow.Store(d)
	}
	return append(dst, d.b[:]...)
}
