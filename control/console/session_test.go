package console

import (
	"strconv"
	"testing"
	"time"
)

// Sign-in attempts: per address, over all addresses, and a full table of
// addresses refuses newcomers until windows end.
func TestLimiter(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := newLimiter(2, 5, time.Minute)
	if !l.allow("a", now) || !l.allow("a", now) || l.allow("a", now) {
		t.Fatal("per-address limit of 2 did not hold")
	}
	if !l.allow("b", now) || !l.allow("c", now) || !l.allow("d", now) || l.allow("e", now) {
		t.Fatal("global limit of 5 did not hold")
	}
	now = now.Add(time.Minute)
	if !l.allow("a", now) || !l.allow("e", now) {
		t.Fatal("a new window did not admit again")
	}

	l = newLimiter(1, 1<<30, time.Minute)
	for i := range maxAddrs {
		l.allow(strconv.Itoa(i), now)
	}
	if l.allow("newcomer", now) || len(l.addrs) != maxAddrs {
		t.Fatalf("a full table admitted a new address (%d tracked)", len(l.addrs))
	}
	if !l.allow("newcomer", now.Add(time.Minute)) || len(l.addrs) != 1 {
		t.Fatalf("expired windows were not dropped (%d tracked)", len(l.addrs))
	}
}

// Sessions are capped: past max the one closest to expiry goes, and an
// expired one is gone.
func TestSessionsBounded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newSessions(3, time.Hour)
	var cookies []string
	for i := range 4 {
		c, _ := s.create(now.Add(time.Duration(i) * time.Second))
		cookies = append(cookies, c)
	}
	if s.len() != 3 || s.valid([]byte(cookies[0]), now) || !s.valid([]byte(cookies[3]), now) {
		t.Fatalf("after 4 sign-ins with room for 3: %d held, oldest valid %v", s.len(), s.valid([]byte(cookies[0]), now))
	}
	if s.valid([]byte(cookies[3]), now.Add(2*time.Hour)) {
		t.Fatal("an expired session is valid")
	}
	if s.valid([]byte(cookies[2][:len(cookies[2])-1]), now) || s.valid(make([]byte, maxCookieLen+1), now) {
		t.Fatal("a wrong or overlong cookie is valid")
	}
	s.end([]byte(cookies[2]))
	if s.valid([]byte(cookies[2]), now) {
		t.Fatal("a signed-out session is valid")
	}
}

func TestCookieValue(t *testing.T) {
	for h, want := range map[string]string{
		CookieName + "=abc":                  "abc",
		"a=b; " + CookieName + "=xyz; c=d":   "xyz",
		"a=b":                                "",
		"x" + CookieName + "=evil":           "",
		"  " + CookieName + "=sp  ;" + "q=1": "sp",
	} {
		if got := string(cookieValue([]byte(h))); got != want {
			t.Errorf("cookieValue(%q) = %q, want %q", h, got, want)
		}
	}
}
