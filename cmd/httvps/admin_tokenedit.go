package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// editFlags are tokens edit's flags: each one given becomes a field of
// the PATCH body.
func editFlags(fs *flag.FlagSet, v *adminVals) {
	v.patch = map[string]any{}
	set := func(name, field, usage string, parse func(string) (any, error)) {
		fs.Func(name, usage, func(s string) error {
			x, err := parse(s)
			if err == nil {
				v.patch[field] = x
			}
			return err
		})
	}
	str := func(s string) (any, error) { return s, nil }
	set("label", "label", "a new `label`", str)
	set("ttl", "ttl", "expire after this `duration` from now (30d, 720h, 90m)", func(s string) (any, error) {
		d, err := parseTTL(s)
		if err != nil {
			return nil, err
		}
		return d.String(), nil
	})
	set("expires-at", "expires_at", "expire at this RFC 3339 `time`, or never", str)
	set("quota", "quota_bytes", "data quota, a `size` like 10GiB (0: unlimited)", func(s string) (any, error) {
		var b byteSize
		err := b.Set(s)
		return int64(b), err
	})
	set("period", "quota_period", "quota `period`: none, day, week, month", str)
	set("anchor", "quota_anchor", "periods from the UTC `calendar` or from the token's creation date (created)", str)
	count := func(s string) (any, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return nil, errors.New("want 0 or a positive integer")
		}
		return n, nil
	}
	set("max-devices", "max_devices", "devices using the token at once across the fleet (`n`, 0: unlimited)", count)
	set("max-sessions", "max_sessions", "concurrent WebSocket sessions across the fleet (`n`, 0: unlimited)", count)
}

func checkEditFlags(v *adminVals) error {
	if len(v.patch) == 0 {
		return errors.New("give at least one of -label, -ttl, -expires-at, -quota, -period, -anchor, -max-devices, -max-sessions")
	}
	if v.patch["ttl"] != nil && v.patch["expires_at"] != nil {
		return errors.New("give -ttl or -expires-at, not both")
	}
	return nil
}

func tokensEdit(a *adminRun) error {
	return request(a, requestTimeout, http.MethodPatch, "/v1/tokens/"+url.PathEscape(a.args[0]), nil, a.vals.patch, func(t tokenJSON) {
		kv := newTable(a.e.stdout, "FIELD", "VALUE")
		tokenFields(kv, t)
		kv.flush()
	})
}

func tokensReset(a *adminRun) error {
	return request(a, requestTimeout, http.MethodPost, "/v1/tokens/"+url.PathEscape(a.args[0])+"/usage/reset", nil, nil, func(t tokenJSON) {
		fmt.Fprintln(a.e.stdout, "Usage of the current period reset; gateways admit the token again within a second.")
		kv := newTable(a.e.stdout, "FIELD", "VALUE")
		tokenFields(kv, t)
		kv.flush()
	})
}

func tokensRotate(a *adminRun) error {
	return request(a, requestTimeout, http.MethodPost, "/v1/tokens/"+url.PathEscape(a.args[0])+"/rotate", nil, nil, func(t tokenJSON) {
		printSecret(a.e.stdout, "Token rotated: the old secret and its keys stopped working, its sessions are being closed. The new token and keys are shown only now; keep them.", t)
	})
}

// historyFlags are the usage commands' flags.
func historyFlags(fs *flag.FlagSet, v *adminVals) {
	fs.StringVar(&v.step, "step", "", "bucket size: hour (default) or day")
	fs.StringVar(&v.from, "from", "", "first bucket, an RFC 3339 `time` or a duration before now like 7d or 12h (default: a day, by day 30 days)")
	fs.StringVar(&v.to, "to", "", "end, an RFC 3339 `time` (default now)")
}

// historyQuery turns the usage flags into the query; -from takes a
// duration back from now as well.
func historyQuery(v *adminVals) (url.Values, error) {
	q := url.Values{}
	if v.step != "" {
		q.Set("step", v.step)
	}
	if v.to != "" {
		q.Set("to", v.to)
	}
	if v.from != "" {
		from := v.from
		if _, err := time.Parse(time.RFC3339, from); err != nil {
			d, err := parseTTL(from)
			if err != nil {
				return nil, fmt.Errorf("-from %q is neither an RFC 3339 time nor a duration like 7d or 12h", from)
			}
			from = time.Now().Add(-d).UTC().Format(time.RFC3339)
		}
		q.Set("from", from)
	}
	return q, nil
}

func tokensUsage(a *adminRun) error {
	return history(a, "/v1/tokens/"+url.PathEscape(a.args[0])+"/usage")
}

func fleetUsage(a *adminRun) error { return history(a, "/v1/usage") }

func history(a *adminRun, path string) error {
	q, err := historyQuery(a.vals)
	if err != nil {
		return err
	}
	return request(a, requestTimeout, http.MethodGet, path, q, nil, func(h usageHistoryJSON) {
		layout := "2006-01-02 15:04"
		if h.Step == "day" {
			layout = time.DateOnly
		}
		tb := newTable(a.e.stdout, "START (UTC)", "UP", "DOWN", "TOTAL")
		for _, b := range h.Buckets {
			tb.row(b.Start.UTC().Format(layout), humanBytes(b.Up), humanBytes(b.Down), humanBytes(b.Total))
		}
		tb.row("total", humanBytes(h.Total.Up), humanBytes(h.Total.Down), humanBytes(h.Total.Total))
		tb.flush()
	})
}
