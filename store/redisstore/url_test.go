package redisstore

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/httvps/httvps/internal/testpeer"
)

func TestParseSentinelURL(t *testing.T) {
	for _, tc := range []struct {
		name, url        string
		addrs            []string
		master           string
		db               int
		user, pw         string
		sentUser, sentPW string
		tls              bool
	}{
		{name: "one sentinel, default port", url: "redis+sentinel://s1/mymaster",
			addrs: []string{"s1:26379"}, master: "mymaster"},
		{name: "three sentinels with db", url: "redis+sentinel://s1:1,s2:2,s3/m/3",
			addrs: []string{"s1:1", "s2:2", "s3:26379"}, master: "m", db: 3},
		{name: "master password only", url: "redis+sentinel://:p%40ss@s1:26379/m",
			addrs: []string{"s1:26379"}, master: "m", pw: "p@ss"},
		{name: "ACL user and sentinel credentials", url: "redis+sentinel://app:pw@s1/m/0?sentinel_username=su&sentinel_password=sp",
			addrs: []string{"s1:26379"}, master: "m", user: "app", pw: "pw", sentUser: "su", sentPW: "sp"},
		{name: "IPv6 sentinels", url: "redis+sentinel://[::1]:26380,[::1]/m",
			addrs: []string{"[::1]:26380", "[::1]:26379"}, master: "m"},
		{name: "TLS", url: "rediss+sentinel://s1/m", addrs: []string{"s1:26379"}, master: "m", tls: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ro, fo, err := parseURL(tc.url)
			if err != nil || ro != nil || fo == nil {
				t.Fatalf("parseURL: %v %v %v", ro, fo, err)
			}
			if !slices.Equal(fo.SentinelAddrs, tc.addrs) || fo.MasterName != tc.master || fo.DB != tc.db {
				t.Errorf("sentinels %v master %q db %d; want %v %q %d", fo.SentinelAddrs, fo.MasterName, fo.DB, tc.addrs, tc.master, tc.db)
			}
			if fo.Username != tc.user || fo.Password != tc.pw || fo.SentinelUsername != tc.sentUser || fo.SentinelPassword != tc.sentPW {
				t.Errorf("credentials %q %q sentinel %q %q", fo.Username, fo.Password, fo.SentinelUsername, fo.SentinelPassword)
			}
			if (fo.TLSConfig != nil) != tc.tls || (fo.TLSConfig != nil && fo.TLSConfig.ServerName != "") {
				t.Errorf("TLS config %v, want TLS %v with no fixed ServerName", fo.TLSConfig, tc.tls)
			}
			if !IsSentinelURL(tc.url) {
				t.Error("IsSentinelURL false")
			}
		})
	}
}

// Bad URLs are refused without connecting, and the message never quotes
// the URL (the password in it).
func TestCheckURLRefuses(t *testing.T) {
	for _, u := range []string{
		"http://secret@h/0",
		"redis://:secret@/0",
		"redis+sentinel://:secret@/m",
		"redis+sentinel://:secret@s1",
		"redis+sentinel://:secret@s1/",
		"redis+sentinel://:secret@s1/m/x",
		"redis+sentinel://:secret@s1/m/0/extra",
		"redis+sentinel://:secret@s1,,s2/m",
		"redis+sentinel://:secret@s1:0/m",
		"redis+sentinel://:secret@s1/m?password=secret",
	} {
		err := CheckURL(u)
		if err == nil {
			t.Errorf("%s: accepted", u)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: error quotes the URL: %v", u, err)
		}
	}
	for _, u := range []string{"redis://h:6379/0", "rediss://:pw@h/1", "unix:///run/redis.sock?db=2", "redis+sentinel://a,b,c/m"} {
		if err := CheckURL(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

// TestSetLogger: go-redis's own messages (here a Sentinel it cannot reach)
// reach the binary's logger at info level with the "redis: " prefix,
// instead of the standard logger on stderr.
func TestSetLogger(t *testing.T) {
	var buf testpeer.LockedBuffer
	SetLogger(slog.New(slog.NewTextHandler(&buf, nil)))
	defer SetLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{"127.0.0.1:1"}, DialTimeout: time.Second})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("ping through an unreachable sentinel succeeded")
	}
	if !strings.Contains(buf.String(), `msg="redis: sentinel:`) || !strings.Contains(buf.String(), "level=INFO") {
		t.Errorf("go-redis's message did not reach the logger: %q", buf.String())
	}
}
