package gateway

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/httvps/httvps/bufpool"
	"github.com/httvps/httvps/internal/nginxdecoy"
)

// Documents serves a few small documents on the gateway's listener, behind
// the decoy: the dynamic access keys and the client config (internal/wiring
// builds one on the store with control/clientdoc), so that a client needs
// only the gateway's port (docs/04-gateway-design.md, "Documents behind the
// decoy"). The gateway asks it only about a complete, well-formed GET or
// HEAD request without a body that is not a WebSocket upgrade; whatever it
// does not serve gets the decoy answer, byte for byte the one an unknown
// path gets. Both methods run on the handshake goroutine.
type Documents interface {
	// Claims reports whether path (the request path as sent, without its
	// query string; valid only during the call) is one Serve answers. It
	// runs for every such request a prober sends: it must be cheap and
	// must not block.
	Claims(path []byte) bool
	// Serve returns the document req asks for, or a result other than
	// DocServed for the decoy. ctx ends at the request's handshake
	// deadline. err, with DocStoreDown, goes to the operator's log, so it
	// must hold no secret.
	Serve(ctx context.Context, req DocRequest) (Document, DocResult, error)
}

// DocRequest is a request the Documents claimed. Its slices are valid only
// during Serve.
type DocRequest struct {
	Path []byte // as given to Claims
	// Bearer is the token of the request's one Authorization: Bearer
	// header (nil: none, or more than one Authorization header).
	Bearer []byte
	Head   bool // HEAD: the answer carries no body
}

// Document is a 200 answer. Body is at most MaxDocumentSize bytes (a larger
// one gets the decoy, counted DocTooLarge) and is not kept after the answer
// is written.
type Document struct {
	ContentType string
	Body        []byte
}

// MaxDocumentSize bounds a Document's body.
const MaxDocumentSize = 64 << 10

// DocResult is what became of a request the Documents claimed: the label of
// the documents metric. It is never shown to the peer.
type DocResult uint8

const (
	DocServed    DocResult = iota // answered 200 with the document
	DocSecret                     // no token has the path's secret or the bearer token (or none was given)
	DocRefused                    // a known token the document is not given for (the client config of a revoked, expired or over-quota token)
	DocStoreDown                  // the store failed or did not answer by the handshake deadline
	DocTooLarge                   // the document is over MaxDocumentSize
	NumDocResults
)

var docResultNames = [NumDocResults]string{"served", "secret", "refused", "store_unavailable", "too_large"}

func (r DocResult) String() string { return nameOf(r, docResultNames[:]) }

// DocumentMetrics is what the gateway reports about documents. A Metrics
// that also implements it receives these calls; same rules as Metrics.
type DocumentMetrics interface {
	Document(r DocResult)
}

type nopDocumentMetrics struct{}

func (nopDocumentMetrics) Document(DocResult) {}

// docPath is the path of the request h.p parsed in req if it may be a
// document request: GET or HEAD, origin form, HTTP/1.x, no body, no
// Upgrade header, and a path the Documents claim. It also returns the
// bearer token of a single Authorization header. Only requests that did
// not become a session come here, so the upgrade path pays nothing.
func (h *handshake) docPath(req []byte) (path, bearer []byte, ok bool) {
	p := &h.p
	if h.g.docs == nil || !p.Done() || p.Status != 0 || h.plainTLS || p.HTTP09() || p.HasBody() {
		return nil, nil, false
	}
	if m := p.Method(); m != "GET" && m != "HEAD" {
		return nil, nil, false
	}
	switch h.reject {
	case RejectPath, RejectNotUpgrade:
	default:
		return nil, nil, false // a WebSocket upgrade that failed later (auth, upstream)
	}
	path = p.Target(req)
	if path == nil {
		return nil, nil, false
	}
	for i, c := range path {
		if c == '?' {
			path = path[:i]
			break
		}
	}
	if !h.g.docs.Claims(path) {
		return nil, nil, false
	}
	if _, n := p.Header(req, "upgrade"); n > 0 {
		return nil, nil, false // a WebSocket upgrade (a malformed one): the decoy
	}
	if v, n := p.Header(req, "authorization"); n == 1 {
		bearer = nginxdecoy.Bearer(v, maxSecret)
	}
	return path, bearer, true
}

// document asks the Documents about the request (docPath said it
// may be one) and answers with the document, or else with the decoy.
func (h *handshake) document(path, bearer []byte) error {
	g := h.g
	ctx, cancel := context.WithDeadline(context.Background(), h.deadline())
	doc, res, err := g.docs.Serve(ctx, DocRequest{Path: path, Bearer: bearer, Head: h.p.Method() == "HEAD"})
	cancel()
	if res == DocServed && len(doc.Body) > MaxDocumentSize {
		res = DocTooLarge
		g.log.Warn("document over the size limit: the decoy answered", "bytes", len(doc.Body), "limit", MaxDocumentSize)
	}
	if res >= NumDocResults {
		res = DocSecret
	}
	g.dm.Document(res)
	switch res {
	case DocServed:
		return h.sendDocument(doc)
	case DocStoreDown:
		h.reject = RejectStoreDown
		g.log.Warn("document: the store did not answer; the decoy answered", "remote", h.remote().String(), "err", err)
	case DocSecret, DocRefused:
		h.reject = RejectSecret
		if g.log.Enabled(context.Background(), slog.LevelDebug) {
			g.log.Debug("document refused", "reason", res.String(), "remote", h.remote().String()) // no secret
		}
	}
	return h.decoy()
}

// sendDocument answers 200 with doc in nginx's header shape (with
// add_header Cache-Control), kept alive as the decoy would keep it.
func (h *handshake) sendDocument(doc Document) error {
	g := h.g
	a := g.pages.Answer(&h.p, h.served, false) // for its keep-alive rule
	keep := a.KeepAlive && g.cfg.DecoyKeepAlive >= 0
	h.served++
	_, _, server, _ := g.pages.Head(a)
	pb := bufpool.Get(len(doc.Body) + len(doc.ContentType) + len(server) + 192)
	defer bufpool.Put(pb)
	out := append((*pb)[:0], "HTTP/1.1 200 OK\r\nServer: "...)
	out = append(out, server...)
	out = append(out, "\r\nDate: "...)
	out = nginxdecoy.AppendDate(out)
	out = append(out, "\r\nContent-Type: "...)
	out = append(out, doc.ContentType...)
	out = append(out, "\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(len(doc.Body)), 10)
	if keep {
		out = append(out, "\r\nConnection: keep-alive"...)
	} else {
		out = append(out, "\r\nConnection: close"...)
	}
	out = append(out, "\r\nCache-Control: no-store\r\n\r\n"...)
	if !a.Head {
		out = append(out, doc.Body...)
	}
	h.c.SetWriteTimeout(time.Second)
	if err := g.sendBytes(out, h.tls, !keep, h.writeOut); err != nil {
		return h.c.Close()
	}
	if !keep {
		return h.lingerClose(false)
	}
	h.nextRequest(false, false)
	return nil
}
