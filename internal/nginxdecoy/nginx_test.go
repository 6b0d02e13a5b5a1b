package nginxdecoy

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// decoyCases: what the emulation decides for a request, as measured against
// nginx 1.22 (e2e/decoy_nginx_test.go checks the gateway's decoy against a
// live one).
var decoyCases = []struct {
	name   string
	req    string
	done   bool // a verdict (else: nginx waits for more)
	status int
	n      int  // request length, for status 0 (-1: len(req))
	keep   bool // kept alive after the answer
}{
	{"GET11", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", true, 0, -1, true},
	{"GET11Close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, close\r\n\r\n", true, 0, -1, false},
	{"GET10", "GET / HTTP/1.0\r\n\r\n", true, 0, -1, false},
	{"GET10KeepAlive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true, 0, -1, true},
	{"BareLF", "GET / HTTP/1.1\nHost: a\n\n", true, 0, -1, true},
	{"CRCRLF", "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", true, 0, -1, true},
	{"Pipelined", "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b", true, 0, 27, true},
	{"LeadingCRLF", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", true, 0, -1, true},
	{"HTTP09", "GET /\r\n", true, 0, -1, false},
	{"HTTP09POST", "POST /\r\n", true, 400, 0, false},
	{"Incomplete", "GET / HTTP/1.1\r\nHost: a\r\n", false, 0, 0, false},
	{"LowercaseEarly", "g", true, 400, 0, false},
	{"HTTP2Early", "GET / HTTP/2", true, 505, 0, false},
	{"HTTP09Version", "GET / HTTP/0.9\r\n\r\n", true, 400, 0, false},
	{"OptionsStar", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", true, 400, 0, false},
	{"Connect", "CONNECT a:443 HTTP/1.1\r\n", true, 400, 0, false},
	{"ConnectPath", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", true, 405, 0, false},
	{"NUL", "GET / HTTP/1.1\r\nX: a\x00", true, 400, 0, false},
	{"BareCR", "GET / HTTP/1.1\r\nX: a\rb", true, 400, 0, false},
	{"NoHost", "GET / HTTP/1.1\r\n\r\n", true, 400, 0, false},
	{"DupHost", "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n", true, 400, 0, false},
	{"BadHost", "GET / HTTP/1.1\r\nHost: a..b\r\n", true, 400, 0, false},
	{"UnderscoreIgnored", "GET / HTTP/1.1\r\nHost: a\r\nX_Host: b\r\n\r\n", true, 0, -1, true},
	{"DotDot", "GET /a/../../b HTTP/1.1\r\n", true, 400, 0, false},
	{"DotDotInside", "GET /a/b/../c HTTP/1.1\r\nHost: a\r\n\r\n", true, 0, -1, true},
	{"BadEscape", "GET /%zz HTTP/1.1\r\n", true, 400, 0, false},
	{"EscapedDotDot", "GET /%2e%2e/x HTTP/1.1\r\n", true, 400, 0, false},
	{"SpaceInURI", "GET /a b HTTP/1.1\r\n", true, 400, 0, false},
	{"Absolute", "GET http://h:80/x HTTP/1.1\r\nHost: a\r\n\r\n", true, 0, -1, true},
	{"BadLength", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", true, 400, 0, false},
	{"Gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", true, 501, 0, false},
	{"TooLargeBody", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n", true, 0, -1, false},
	{"LongURI", "GET /" + strings.Repeat("u", 9000), true, 414, 0, false},
	{"LongHeader", "GET / HTTP/1.1\r\nX: " + strings.Repeat("h", 9000), true, StatusHeaderTooLarge, 0, false},
	{"MSIE6POST", "POST / HTTP/1.1\r\nHost: a\r\nUser-Agent: Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)\r\n\r\n", true, 0, -1, false},
}

func TestDecoyParser(t *testing.T) {
	for _, tc := range decoyCases {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.req)
			var p Parser
			// Byte by byte, as the slowest client sends it: the verdict is
			// the same as for the whole request at once.
			done := false
			for i := 1; i <= len(b) && !done; i++ {
				done = p.Feed(b[:i], 8192)
			}
			var q Parser
			if qd := q.Feed(b, 8192); qd != done || q.Status != p.Status || q.Len() != p.Len() {
				t.Fatalf("at once: done %v status %d pos %d; byte by byte: %v %d %d", qd, q.Status, q.Len(), done, p.Status, p.Len())
			}
			if done != tc.done || p.Status != tc.status {
				t.Fatalf("done %v status %d, want %v %d", done, p.Status, tc.done, tc.status)
			}
			if !done || p.Status != 0 {
				return
			}
			n := tc.n
			if n < 0 {
				n = len(b)
			}
			if p.Len() != n {
				t.Errorf("request length %d, want %d", p.Len(), n)
			}
			if a := answerFor(&p, 0, false); a.KeepAlive != tc.keep {
				t.Errorf("keep-alive %v, want %v (answer %+v)", a.KeepAlive, tc.keep, a)
			}
		})
	}
}

func TestDecoyAnswers(t *testing.T) {
	d := New(Config{})
	parse := func(req string) *Parser {
		var p Parser
		p.Feed([]byte(req), 8192)
		return &p
	}
	get := d.AppendAnswer(nil, answerFor(parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0, false))
	head := d.AppendAnswer(nil, answerFor(parse("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"), 0, false))
	if !bytes.HasPrefix(get, []byte("HTTP/1.1 404 Not Found\r\nServer: nginx\r\nDate: ")) ||
		!bytes.Contains(get, []byte(" GMT\r\nContent-Type: text/html\r\nContent-Length: 146\r\nConnection: keep-alive\r\n\r\n<html>")) {
		t.Errorf("GET: %q", get)
	}
	if i := bytes.Index(get, []byte("\r\n\r\n")); i < 0 || !bytes.Equal(head, get[:i+4]) {
		t.Errorf("HEAD is not GET's header: %q", head)
	}
	if b := d.AppendAnswer(nil, answerFor(parse("GET /\r\n"), 0, false)); !bytes.Equal(b, d.pages[404]) {
		t.Errorf("HTTP/0.9: %q", b)
	}
	if b := d.AppendAnswer(nil, answerFor(parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0, true)); !bytes.HasPrefix(b, []byte("HTTP/1.1 400 Bad Request\r\n")) ||
		!bytes.Contains(b, []byte("Content-Length: 248\r\nConnection: close\r\n")) || !bytes.Contains(b, []byte("The plain HTTP request was sent to HTTPS port")) {
		t.Errorf("plain HTTP to the TLS port: %q", b)
	}
	if b := d.AppendAnswer(nil, answerFor(parse("GET / HTTP/1.1\r\nUser-Agent: x Chrome/1\r\n\r\n"), 0, false)); !bytes.Contains(b, []byte("Content-Length: 552\r\n")) {
		t.Errorf("Chrome 400 without padding: %q", b)
	}
	// The last request nginx serves on one connection is told it closes.
	if a := answerFor(parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), nginxKeepReqs-1, false); a.KeepAlive {
		t.Error("keep-alive past keepalive_requests")
	}
}

// The emulation allocates nothing per request (the Date is made once a
// second).
func TestDecoyAllocs(t *testing.T) {
	d := New(Config{})
	req := []byte("GET /x HTTP/1.1\r\nHost: a\r\nUser-Agent: curl/8\r\nConnection: keep-alive\r\n\r\n")
	buf := make([]byte, 0, 1024)
	AppendDate(nil)
	n := testing.AllocsPerRun(200, func() {
		var p Parser
		p.Feed(req, 8192)
		buf = d.AppendAnswer(buf[:0], answerFor(&p, 0, false))
	})
	if n > 0.05 { // a second boundary during the run may make one Date
		t.Errorf("%.2f allocations per request", n)
	}
}

func FuzzDecoyParser(f *testing.F) {
	for _, tc := range decoyCases {
		f.Add([]byte(tc.req))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Parser
		done := p.Feed(b, 4096)
		if p.Len() > len(b) || done && !p.Done() {
			t.Fatalf("pos %d of %d, done %v state %d", p.Len(), len(b), done, p.state)
		}
		var k ChunkSkipper
		if n, _, _ := k.Skip(b); n > len(b) {
			t.Fatalf("chunk skip %d of %d", n, len(b))
		}
	})
}

// decoyStatuses are the statuses Config.Status accepts, with nginx 1.22's
// reason phrase (ngx_http_status_lines) for each.
var decoyStatuses = []struct {
	code   int
	reason string
}{
	{200, "OK"},
	{400, "Bad Request"}, {401, "Unauthorized"}, {402, "Payment Required"}, {403, "Forbidden"},
	{404, "Not Found"}, {405, "Not Allowed"}, {406, "Not Acceptable"}, {408, "Request Time-out"},
	{409, "Conflict"}, {410, "Gone"}, {411, "Length Required"}, {412, "Precondition Failed"},
	{413, "Request Entity Too Large"}, {414, "Request-URI Too Large"}, {415, "Unsupported Media Type"},
	{416, "Requested Range Not Satisfiable"}, {421, "Misdirected Request"}, {429, "Too Many Requests"},
	{500, "Internal Server Error"}, {501, "Not Implemented"}, {502, "Bad Gateway"},
	{503, "Service Temporarily Unavailable"}, {504, "Gateway Time-out"},
	{505, "HTTP Version Not Supported"}, {507, "Insufficient Storage"},
}

// TestDecoyStatusReasons: every status Config.Status accepts is answered with
// nginx's reason phrase and, for an error, nginx's page title; no other
// status is accepted. Broke: -decoy-status 500 sent "HTTP/1.1 500 Status".
func TestDecoyStatusReasons(t *testing.T) {
	want := map[int]bool{}
	for _, tc := range decoyStatuses {
		want[tc.code] = true
		d := New(Config{Status: tc.code})
		var p Parser
		p.Feed([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 8192)
		b := d.AppendAnswer(nil, answerFor(&p, 0, false))
		line := fmt.Sprintf("HTTP/1.1 %d %s\r\n", tc.code, tc.reason)
		if !bytes.HasPrefix(b, []byte(line)) {
			t.Errorf("%d: status line %q, want %q", tc.code, b[:bytes.IndexByte(b, '\n')+1], line)
		}
		title := fmt.Sprintf("<title>%d %s</title>", tc.code, tc.reason)
		if tc.code >= 400 && !bytes.Contains(b, []byte(title)) {
			t.Errorf("%d: page without %q: %q", tc.code, title, b)
		}
		// nginx has no page for 200 ("return 200;" is empty).
		if tc.code == 200 && !bytes.Contains(b, []byte("\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n")) {
			t.Errorf("200: %q", b)
		}
	}
	for code := 0; code < 1000; code++ {
		if StatusValid(code) != want[code] {
			t.Errorf("StatusValid(%d) = %v", code, !want[code])
		}
	}
}
