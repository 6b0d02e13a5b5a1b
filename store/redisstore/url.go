package redisstore

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The URLs New accepts:
//
//	redis://[[user]:password@]host[:6379][/db]
//	rediss://…                     the same over TLS
//	unix://[[user]:password@]/path/to/redis.sock[?db=N]
//	redis+sentinel://[[user]:password@]host[:26379][,host[:26379]…]/master[/db][?sentinel_username=U&sentinel_password=P]
//	rediss+sentinel://…            the same over TLS, to the Sentinels and to Redis
//
// In a Sentinel URL the hosts are the Sentinels (26379 when a port is
// left out), master is the name they monitor (sentinel monitor NAME …),
// and the user and password are those of Redis itself; the Sentinels'
// own credentials, when they have requirepass set, go in the query.
// Every Sentinel listed is only a starting point: go-redis asks them for
// the current primary before each new connection and learns the other
// Sentinels from them.

// sentinelPort is Sentinel's usual port, used when a host gives none.
const sentinelPort = "26379"

// CheckURL reports whether New would accept s, without connecting. Its
// errors never quote s, which may hold a password.
func CheckURL(s string) error {
	_, _, err := parseURL(s)
	return err
}

// IsSentinelURL reports whether s names a Redis reached through Sentinel.
func IsSentinelURL(s string) bool {
	return strings.HasPrefix(s, "redis+sentinel://") || strings.HasPrefix(s, "rediss+sentinel://")
}

// parseURL turns s into the options of one client: exactly one of the
// results is non-nil.
func parseURL(s string) (*redis.Options, *redis.FailoverOptions, error) {
	if IsSentinelURL(s) {
		fo, err := parseSentinelURL(s)
		return nil, fo, err
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, nil, errors.New("not a URL like redis://host:6379/0")
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
		if u.Scheme != "unix" && u.Host == "" {
			return nil, nil, errors.New("no host: want redis://host:6379/0")
		}
		ro, err := redis.ParseURL(s)
		if err != nil {
			// ParseURL's message may quote the URL, and with it the password.
			return nil, nil, errors.New("not a URL like redis://host:6379/0 (or rediss://, unix://)")
		}
		return ro, nil, nil
	default:
		return nil, nil, fmt.Errorf("scheme %q: not redis or rediss (nor unix, redis+sentinel, rediss+sentinel)", u.Scheme)
	}
}

func parseSentinelURL(s string) (*redis.FailoverOptions, error) {
	const want = "want redis+sentinel://host:26379,host:26379/master[/db]"
	// net/url takes one host only: cut the list of Sentinels out of the
	// authority and parse the rest with a placeholder host.
	scheme, rest, _ := strings.Cut(s, "://")
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	auth := rest[:end]
	at := strings.LastIndex(auth, "@")
	hosts := auth[at+1:]
	u, err := url.Parse(scheme + "://" + auth[:at+1] + "sentinel" + rest[end:])
	if err != nil {
		return nil, errors.New("not a URL: " + want)
	}
	fo := &redis.FailoverOptions{}
	if hosts == "" {
		return nil, errors.New("no Sentinel hosts: " + want)
	}
	for _, h := range strings.Split(hosts, ",") {
		if h == "" {
			return nil, errors.New("an empty Sentinel host: " + want)
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			// No port (a bracketed IPv6 address is still bracketed).
			host, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), sentinelPort
		}
		if host == "" {
			return nil, errors.New("a Sentinel host without a name: " + want)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return nil, errors.New("a Sentinel port is not a number from 1 to 65535")
		}
		fo.SentinelAddrs = append(fo.SentinelAddrs, net.JoinHostPort(host, port))
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	switch {
	case len(parts) == 0 || parts[0] == "":
		return nil, errors.New("no master name: " + want)
	case len(parts) > 2:
		return nil, errors.New("path has more than master and db: " + want)
	}
	fo.MasterName = parts[0]
	if len(parts) == 2 {
		db, err := strconv.Atoi(parts[1])
		if err != nil || db < 0 {
			return nil, errors.New("db is not a number: " + want)
		}
		fo.DB = db
	}
	if u.User != nil {
		fo.Username = u.User.Username()
		fo.Password, _ = u.User.Password()
	}
	for k, v := range u.Query() {
		switch k {
		case "sentinel_username":
			fo.SentinelUsername = v[len(v)-1]
		case "sentinel_password":
			fo.SentinelPassword = v[len(v)-1]
		default:
			return nil, fmt.Errorf("unknown query parameter %q (known: sentinel_username, sentinel_password)", k)
		}
	}
	if u.Scheme == "rediss+sentinel" {
		// No ServerName: crypto/tls takes it from each address dialled,
		// Sentinel or primary (whose certificate must then name the
		// address the Sentinels announce, often an IP).
		fo.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return fo, nil
}
