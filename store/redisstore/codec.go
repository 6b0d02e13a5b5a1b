package redisstore

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// fmtTime encodes t as "<unix seconds>.<nanoseconds>", which covers every
// time.Time year (UnixNano does not); zero is "".
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}

func parseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	sec, nsec, _ := strings.Cut(s, ".")
	a, err1 := strconv.ParseInt(sec, 10, 64)
	b, err2 := strconv.ParseInt(nsec, 10, 64)
	if err1 != nil || err2 != nil {
		return time.Time{}
	}
	return time.Unix(a, b).UTC()
}

func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// orderMember is a token's member in tok-order and its list cursor:
// 16 hex digits of the seconds (sign bit flipped so negative times sort
// first), 8 of the nanoseconds, ':' and the ID.
func orderMember(created time.Time, id string) string {
	return fmt.Sprintf("%016x%08x:%s", uint64(created.Unix())^(1<<63), created.Nanosecond(), id)
}

// validCursor accepts what orderMember produces.
func validCursor(c string) bool {
	if len(c) < 26 || c[24] != ':' {
		return false
	}
	_, err := hex.DecodeString(c[:24])
	return err == nil
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}
