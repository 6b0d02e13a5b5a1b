package gateway

import (
	"time"

	"github.com/httvps/httvps/internal/nginxdecoy"
)

// The built-in decoy answers like Debian's nginx 1.22 with `server_tokens
// off` and `location / { return 404; }`. The emulation itself (the request
// parser, the pages, the answer rules) lives in internal/nginxdecoy, which
// the control API shares so that both answer strangers alike; what is
// left here is the connection's part: dropping the body of an answered
// request and the time that is given.

// The gateway's names for the shared emulation.
type (
	reqParser  = nginxdecoy.Parser
	answer     = nginxdecoy.Answer
	decoyPages = nginxdecoy.Pages
)

const statusHeaderTooLarge = nginxdecoy.StatusHeaderTooLarge

// nginxLinger is nginx's lingering_timeout: a body still being discarded
// is given up after this long without a byte.
const nginxLinger = 5 * time.Second

// DecoyStatusValid reports whether code can be Config.DecoyStatus: 200 (for
// a custom body) or a 4xx/5xx for which nginx has its own reason phrase and
// error page. Other codes would need a phrase nginx never sends, or headers
// (Location, Content-Range) or an empty body the decoy does not give.
func DecoyStatusValid(code int) bool { return nginxdecoy.StatusValid(code) }

// DecoyConfig is the decoy cfg gives, for a server beside the gateway that
// is to answer strangers alike (the control API).
func (cfg Config) DecoyConfig() nginxdecoy.Config {
	return nginxdecoy.Config{
		Server:      cfg.ServerHeader,
		Status:      cfg.DecoyStatus,
		Body:        cfg.DecoyBody,
		ContentType: cfg.DecoyContentType,
	}
}

func newDecoyPages(cfg Config) *decoyPages {
	return nginxdecoy.New(cfg.DecoyConfig())
}

// bodySkip drops the body of an answered request, as nginx discards it.
type bodySkip struct {
	left    int64 // Content-Length bytes still to come
	chunked bool
	ck      nginxdecoy.ChunkSkipper
	close   bool // close once the body is dropped
}

func (s *bodySkip) active() bool { return s.left > 0 || s.chunked }

// drop consumes body bytes from b and returns how many; ok false means the
// chunked body is malformed (nginx then closes).
func (s *bodySkip) drop(b []byte) (n int, ok bool) {
	if s.chunked {
		n, done, ok := s.ck.Skip(b)
		if done || !ok {
			s.chunked = false
		}
		return n, ok
	}
	n = int(min(s.left, int64(len(b))))
	s.left -= int64(n)
	return n, true
}

// start sets up the skip of p's body.
func (s *bodySkip) start(p *reqParser, close bool) {
	*s = bodySkip{close: close}
	if p.Chunked() {
		s.chunked = true
	} else {
		s.left = p.Length()
	}
}
