package console

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// CookieName is the session cookie. The __Host- prefix makes the browser
// refuse it unless it is Secure, has Path=/ and no Domain, so no sibling
// host or plain-http page can plant or shadow it.
const CookieName = "__Host-httvps-console"

// maxCookieLen bounds the cookie value looked at (ours are 43 bytes).
const maxCookieLen = 64

// session is one sign-in.
type session struct {
	csrf    string // the form token every change must carry
	expires time.Time
}

// sessions are the signed-in browsers, by the SHA-256 of their cookie (a
// memory dump shows no usable cookie). At most max are held.
type sessions struct {
	max int
	ttl time.Duration

	mu sync.Mutex
	m  map[[sha256.Size]byte]session // Guarded by mu.
}

func newSessions(max int, ttl time.Duration) *sessions {
	return &sessions{max: max, ttl: ttl, m: make(map[[sha256.Size]byte]session)}
}

// create starts a session and returns its cookie value and CSRF token.
// Past max, expired sessions go first, then the one that expires soonest.
func (s *sessions) create(now time.Time) (cookie, csrf string) {
	cookie, csrf = randomString(), randomString()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= s.max {
		var oldest [sha256.Size]byte
		var at time.Time
		for k, v := range s.m {
			if !now.Before(v.expires) {
				delete(s.m, k)
				continue
			}
			if at.IsZero() || v.expires.Before(at) {
				oldest, at = k, v.expires
			}
		}
		if len(s.m) >= s.max {
			delete(s.m, oldest)
		}
	}
	s.m[sha256.Sum256([]byte(cookie))] = session{csrf: csrf, expires: now.Add(s.ttl)}
	return cookie, csrf
}

// get returns the live session of cookie.
func (s *sessions) get(cookie []byte, now time.Time) (session, bool) {
	if len(cookie) == 0 || len(cookie) > maxCookieLen {
		return session{}, false
	}
	k := sha256.Sum256(cookie)
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	if ok && !now.Before(v.expires) {
		delete(s.m, k)
		ok = false
	}
	return v, ok
}

func (s *sessions) valid(cookie []byte, now time.Time) bool {
	_, ok := s.get(cookie, now)
	return ok
}

// end signs cookie out.
func (s *sessions) end(cookie []byte) {
	if len(cookie) == 0 || len(cookie) > maxCookieLen {
		return
	}
	s.mu.Lock()
	delete(s.m, sha256.Sum256(cookie))
	s.mu.Unlock()
}

func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// csrfOK compares a form's token with the session's in constant time.
func csrfOK(sess session, got []byte) bool {
	return len(got) > 0 && subtle.ConstantTimeCompare([]byte(sess.csrf), got) == 1
}

func randomString() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// cookieValue finds our cookie in a Cookie header value.
func cookieValue(h []byte) []byte {
	for len(h) > 0 {
		var part []byte
		if i := bytes.IndexByte(h, ';'); i >= 0 {
			part, h = h[:i], h[i+1:]
		} else {
			part, h = h, nil
		}
		part = bytes.TrimSpace(part)
		if v, ok := bytes.CutPrefix(part, []byte(CookieName+"=")); ok {
			return v
		}
	}
	return nil
}

// limiter counts sign-in attempts in fixed windows, per client address and
// over all. It holds at most maxAddrs addresses; when full of live
// windows, a new address is refused (the global count is then high anyway).
type limiter struct {
	perAddr, global int
	window          time.Duration

	mu          sync.Mutex
	addrs       map[string]window // Guarded by mu.
	all         window            // Guarded by mu.
	refusedSeen uint64            // Guarded by mu.
}

type window struct {
	start time.Time
	n     int
}

const maxAddrs = 4096

func newLimiter(perAddr, global int, w time.Duration) *limiter {
	return &limiter{perAddr: perAddr, global: global, window: w, addrs: make(map[string]window)}
}

// allow books one attempt from addr at now and reports whether it may go on.
func (l *limiter) allow(addr string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.all.start) >= l.window {
		l.all = window{start: now}
	}
	w, ok := l.addrs[addr]
	if !ok && len(l.addrs) >= maxAddrs {
		for k, v := range l.addrs {
			if now.Sub(v.start) >= l.window {
				delete(l.addrs, k)
			}
		}
		if len(l.addrs) >= maxAddrs {
			l.refusedSeen++
			return false
		}
	}
	if now.Sub(w.start) >= l.window {
		w = window{start: now}
	}
	if w.n >= l.perAddr || l.all.n >= l.global {
		l.refusedSeen++
		return false
	}
	w.n++
	l.all.n++
	l.addrs[addr] = w
	return true
}
