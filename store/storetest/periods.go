package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/httvps/httvps/store"
)

func date(y int, m time.Month, d, h int) time.Time {
	return time.Date(y, m, d, h, 0, 0, 0, time.UTC)
}

// The store puts usage in the period store.PeriodBounds names (Redis
// computes it in Lua): every period kind and anchor, months too short for
// the anchor day, leap years, year ends.
func testPeriodBounds(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	kinds := []struct{ period, anchor string }{
		{store.PeriodNone, store.AnchorCalendar},
		{store.PeriodDay, store.AnchorCalendar},
		{store.PeriodWeek, store.AnchorCalendar},
		{store.PeriodWeek, store.AnchorCreated},
		{store.PeriodMonth, store.AnchorCalendar},
		{store.PeriodMonth, store.AnchorCreated},
	}
	created := []time.Time{date(2031, 1, 31, 22), date(2031, 3, 15, 0), date(2032, 2, 29, 5), date(2030, 12, 30, 23)}
	ats := []time.Time{
		date(2032, 2, 28, 23), date(2032, 2, 29, 0), date(2032, 3, 1, 12), date(2032, 4, 30, 23),
		date(2032, 5, 31, 1), date(2032, 12, 31, 23), date(2033, 1, 1, 0), date(2033, 2, 28, 7),
	}
	for _, k := range kinds {
		for _, c := range created {
			tok := newToken("period")
			tok.CreatedAt, tok.QuotaPeriod, tok.QuotaAnchor = c, k.period, k.anchor
			must(t, s.CreateToken(ctx, tok), "CreateToken")
			for _, at := range ats {
				must(t, s.AddUsage(ctx, at, map[string]store.Usage{tok.ID: {Up: 1}}), "AddUsage")
				u, err := s.GetUsage(ctx, tok.ID)
				must(t, err, "GetUsage")
				start, end := store.PeriodBounds(k.period, k.anchor, c, at)
				if !u.Since.Equal(start) || !u.Until.Equal(end) {
					t.Errorf("%s/%q created %s, at %s: period [%s, %s), want [%s, %s)", k.period, k.anchor,
						c.Format(time.DateTime), at.Format(time.DateTime), u.Since, u.Until, start, end)
				}
				if !start.IsZero() && (at.Before(start) || !at.Before(end)) {
					t.Errorf("PeriodBounds(%s, %q, %s, %s) = [%s, %s) does not hold at", k.period, k.anchor, c, at, start, end)
				}
			}
		}
	}
	// The rule for a month anchored on the 31st, spelled out.
	s31, e31 := store.PeriodBounds(store.PeriodMonth, store.AnchorCreated, date(2031, 1, 31, 9), date(2031, 3, 5, 0))
	if !s31.Equal(date(2031, 2, 28, 0)) || !e31.Equal(date(2031, 3, 31, 0)) {
		t.Errorf("month from the 31st, on 5 March: [%s, %s), want [28 Feb, 31 Mar)", s31, e31)
	}
}

// A monthly quota: the usage counts within its month, is kept as a past
// period when the month ends, and the new month starts from zero.
func testPeriodRollover(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tok := newToken("monthly")
	tok.QuotaPeriod = store.PeriodMonth
	must(t, s.CreateToken(ctx, tok), "CreateToken")
	must(t, s.AddUsage(ctx, date(2031, 1, 15, 3), map[string]store.Usage{tok.ID: {Up: 100, Down: 50}}), "AddUsage")
	must(t, s.AddUsage(ctx, date(2031, 1, 31, 23), map[string]store.Usage{tok.ID: {Up: 1}}), "AddUsage")
	u, err := s.GetUsage(ctx, tok.ID)
	must(t, err, "GetUsage")
	if u.Up != 101 || u.Down != 50 || !u.Since.Equal(date(2031, 1, 1, 0)) || !u.Until.Equal(date(2031, 2, 1, 0)) {
		t.Fatalf("January usage = %+v", u)
	}
	if got := u.At(date(2031, 1, 31, 23)).Total(); got != 151 {
		t.Errorf("At(31 Jan).Total() = %d, want 151", got)
	}
	if got := u.At(date(2031, 2, 1, 0)); got.Total() != 0 {
		t.Errorf("At(1 Feb) = %+v, want zero: the month ended", got)
	}
	past, err := s.PastPeriods(ctx, tok.ID)
	must(t, err, "PastPeriods")
	if len(past) != 0 {
		t.Errorf("past periods before any ended: %+v", past)
	}
	must(t, s.AddUsage(ctx, date(2031, 2, 2, 0), map[string]store.Usage{tok.ID: {Up: 3, Down: 4}}), "AddUsage February")
	u, err = s.GetUsage(ctx, tok.ID)
	must(t, err, "GetUsage")
	if u.Up != 3 || u.Down != 4 || !u.Since.Equal(date(2031, 2, 1, 0)) {
		t.Errorf("February usage = %+v, want 3/4 since 1 Feb", u)
	}
	past, err = s.PastPeriods(ctx, tok.ID)
	must(t, err, "PastPeriods")
	want := []store.PeriodUsage{{Start: date(2031, 1, 1, 0), End: date(2031, 2, 1, 0), Up: 101, Down: 50}}
	if !reflect.DeepEqual(past, want) {
		t.Errorf("past periods = %+v, want %+v", past, want)
	}

	// Reset zeroes the current period only.
	must(t, s.ResetUsage(ctx, tok.ID, date(2031, 2, 3, 0)), "ResetUsage")
	u, err = s.GetUsage(ctx, tok.ID)
	must(t, err, "GetUsage after reset")
	if u.Total() != 0 || !u.Since.Equal(date(2031, 2, 1, 0)) {
		t.Errorf("usage after reset = %+v", u)
	}
	must(t, s.AddUsage(ctx, date(2031, 2, 3, 1), map[string]store.Usage{tok.ID: {Down: 9}}), "AddUsage after reset")
	if u, _ = s.GetUsage(ctx, tok.ID); u.Up != 0 || u.Down != 9 {
		t.Errorf("usage after reset and 9 bytes = %+v", u)
	}
	if past, _ = s.PastPeriods(ctx, tok.ID); len(past) != 1 {
		t.Errorf("reset changed the past periods: %+v", past)
	}
	// A reset after the period ended keeps the ended period.
	must(t, s.ResetUsage(ctx, tok.ID, date(2031, 3, 2, 0)), "ResetUsage in March")
	if past, _ = s.PastPeriods(ctx, tok.ID); len(past) != 2 || past[0].Down != 9 || !past[0].Start.Equal(date(2031, 2, 1, 0)) {
		t.Errorf("past periods after a reset in the next month = %+v", past)
	}

	// A new period keeps what the current one counted until it ends.
	l := store.LimitsOf(tok)
	l.QuotaPeriod = store.PeriodNone
	must(t, s.AddUsage(ctx, date(2031, 3, 2, 1), map[string]store.Usage{tok.ID: {Up: 5}}), "AddUsage")
	must(t, s.UpdateLimits(ctx, tok.ID, l, store.AllLimits), "UpdateLimits none")
	must(t, s.AddUsage(ctx, date(2031, 3, 2, 2), map[string]store.Usage{tok.ID: {Up: 5}}), "AddUsage")
	u, _ = s.GetUsage(ctx, tok.ID)
	if u.Up != 10 || !u.Until.IsZero() {
		t.Errorf("usage after switching to no period = %+v, want 10 up and no end", u)
	}
	got, err := s.GetToken(ctx, tok.ID)
	must(t, err, "GetToken")
	if got.QuotaPeriod != store.PeriodNone {
		t.Errorf("period after UpdateLimits = %q", got.QuotaPeriod)
	}
	l.QuotaPeriod, l.QuotaAnchor = store.PeriodWeek, store.AnchorCreated
	must(t, s.UpdateLimits(ctx, tok.ID, l, store.AllLimits), "UpdateLimits week")
	if got, _ = s.GetToken(ctx, tok.ID); got.QuotaPeriod != store.PeriodWeek || got.QuotaAnchor != store.AnchorCreated {
		t.Errorf("period after UpdateLimits = %q/%q", got.QuotaPeriod, got.QuotaAnchor)
	}

	for _, bad := range []store.Limits{{QuotaPeriod: "year"}, {QuotaPeriod: store.PeriodDay, QuotaAnchor: "moon"}} {
		mustErr(t, s.UpdateLimits(ctx, tok.ID, bad, store.AllLimits), store.ErrInvalid, fmt.Sprintf("UpdateLimits %+v", bad))
	}
	bad := newToken("bad")
	bad.QuotaPeriod = "fortnight"
	mustErr(t, s.CreateToken(ctx, bad), store.ErrInvalid, "CreateToken with a bad period")
	mustErr(t, s.ResetUsage(ctx, store.NewID(), time.Now()), store.ErrNotFound, "ResetUsage unknown")
	if _, err := s.PastPeriods(ctx, store.NewID()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PastPeriods unknown: %v", err)
	}
}

// Past periods are bounded: the newest MaxPastPeriods are kept.
func testPastPeriodsBounded(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tok := newToken("daily")
	tok.QuotaPeriod = store.PeriodDay
	must(t, s.CreateToken(ctx, tok), "CreateToken")
	first := date(2031, 5, 1, 12)
	days := store.MaxPastPeriods + 6
	for i := range days + 1 {
		must(t, s.AddUsage(ctx, first.AddDate(0, 0, i), map[string]store.Usage{tok.ID: {Up: int64(i + 1)}}), "AddUsage")
	}
	past, err := s.PastPeriods(ctx, tok.ID)
	must(t, err, "PastPeriods")
	if len(past) != store.MaxPastPeriods {
		t.Fatalf("%d past periods, want %d", len(past), store.MaxPastPeriods)
	}
	for i, p := range past {
		day := days - 1 - i // newest first: the day before the current one
		if p.Up != int64(day+1) || !p.Start.Equal(date(2031, 5, 1, 0).AddDate(0, 0, day)) || !p.End.Equal(p.Start.AddDate(0, 0, 1)) {
			t.Fatalf("past[%d] = %+v, want day %d with %d bytes", i, p, day, day+1)
		}
	}
}

// RotateToken moves the token to a new hash atomically; identity, limits,
// usage and assignments stay.
func testRotate(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tok, other := newToken("rotate"), newToken("other")
	must(t, s.CreateToken(ctx, tok), "CreateToken")
	must(t, s.CreateToken(ctx, other), "CreateToken other")
	must(t, s.AddUsage(ctx, time.Now(), map[string]store.Usage{tok.ID: {Up: 11, Down: 22}}), "AddUsage")
	newHash := store.HashToken("new-secret-" + store.NewID())
	old, err := s.RotateToken(ctx, tok.ID, newHash)
	must(t, err, "RotateToken")
	if old.Hash != tok.Hash || old.ID != tok.ID {
		t.Errorf("RotateToken returned hash %x id %s, want the old hash and the id", old.Hash[:4], old.ID)
	}
	if _, err := s.GetTokenByHash(ctx, tok.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old hash still finds the token: %v", err)
	}
	got, err := s.GetTokenByHash(ctx, newHash)
	must(t, err, "GetTokenByHash new")
	want := tok
	want.Hash = newHash
	tokensEqual(t, got, want)
	if u, _ := s.GetUsage(ctx, tok.ID); u.Up != 11 || u.Down != 22 {
		t.Errorf("usage after rotation = %+v", u)
	}
	mustErr(t, func() error { _, err := s.RotateToken(ctx, tok.ID, other.Hash); return err }(), store.ErrExists, "RotateToken to a taken hash")
	mustErr(t, func() error { _, err := s.RotateToken(ctx, store.NewID(), store.HashToken("x")); return err }(), store.ErrNotFound, "RotateToken unknown")
	mustErr(t, func() error { _, err := s.RotateToken(ctx, tok.ID, [32]byte{}); return err }(), store.ErrInvalid, "RotateToken zero")
	if got, _ := s.GetTokenByHash(ctx, other.Hash); got.ID != other.ID {
		t.Errorf("a refused rotation moved the other token's hash")
	}

	must(t, s.UpdateLabel(ctx, tok.ID, "relabelled"), "UpdateLabel")
	if got, _ := s.GetToken(ctx, tok.ID); got.Label != "relabelled" {
		t.Errorf("label = %q", got.Label)
	}
	mustErr(t, s.UpdateLabel(ctx, store.NewID(), "x"), store.ErrNotFound, "UpdateLabel unknown")

	must(t, s.DeleteToken(ctx, tok.ID), "DeleteToken")
	if _, err := s.GetTokenByHash(ctx, newHash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("new hash finds a deleted token: %v", err)
	}
}

// History: the hour and day buckets hold exactly the bytes added at their
// times, per token and for the fleet; old buckets are gone.
func testUsageHistory(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	a, b := newToken("a"), newToken("b")
	must(t, s.CreateToken(ctx, a), "CreateToken a")
	must(t, s.CreateToken(ctx, b), "CreateToken b")
	hour := time.Now().UTC().Truncate(time.Hour)
	add := func(at time.Time, d map[string]store.Usage) {
		t.Helper()
		must(t, s.AddUsage(ctx, at, d), "AddUsage")
	}
	add(hour.Add(-2*time.Hour+5*time.Minute), map[string]store.Usage{a.ID: {Up: 100, Down: 200}, b.ID: {Up: 7}})
	add(hour.Add(-2*time.Hour+50*time.Minute), map[string]store.Usage{a.ID: {Up: 1, Down: 2}})
	add(hour.Add(1*time.Minute), map[string]store.Usage{a.ID: {Down: 1000}, b.ID: {Down: 3}})

	got, err := s.UsageHistory(ctx, a.ID, hour.Add(-3*time.Hour), hour.Add(time.Hour), store.StepHour)
	must(t, err, "UsageHistory hour")
	want := []store.Bucket{
		{Start: hour.Add(-3 * time.Hour)},
		{Start: hour.Add(-2 * time.Hour), Up: 101, Down: 202},
		{Start: hour.Add(-1 * time.Hour)},
		{Start: hour, Down: 1000},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("token hours = %+v\nwant %+v", got, want)
	}
	fleet, err := s.UsageHistory(ctx, "", hour.Add(-3*time.Hour), hour.Add(time.Hour), store.StepHour)
	must(t, err, "UsageHistory fleet")
	want[1].Up, want[3].Down = 108, 1003
	if !reflect.DeepEqual(fleet, want) {
		t.Errorf("fleet hours = %+v\nwant %+v", fleet, want)
	}
	// Unaligned bounds widen to whole steps.
	one, err := s.UsageHistory(ctx, b.ID, hour.Add(-2*time.Hour+time.Minute), hour.Add(-2*time.Hour+2*time.Minute), store.StepHour)
	must(t, err, "UsageHistory unaligned")
	if len(one) != 1 || one[0] != (store.Bucket{Start: hour.Add(-2 * time.Hour), Up: 7}) {
		t.Errorf("one unaligned hour = %+v", one)
	}

	day := hour.Truncate(store.StepDay)
	days, err := s.UsageHistory(ctx, a.ID, day.AddDate(0, 0, -1), day.AddDate(0, 0, 1), store.StepDay)
	must(t, err, "UsageHistory day")
	var sum store.Usage
	for _, d := range days {
		sum.Up += d.Up
		sum.Down += d.Down
	}
	if len(days) != 2 || sum.Up != 101 || sum.Down != 1202 {
		t.Errorf("token days = %+v, want 101 up and 1202 down over two days", days)
	}

	// Retention: hours older than HourlyRetention and days older than
	// DailyRetention are not kept; the day of an old hour is.
	old := hour.Add(-store.HourlyRetention - 48*time.Hour)
	add(old, map[string]store.Usage{a.ID: {Up: 5, Down: 6}})
	hours, err := s.UsageHistory(ctx, a.ID, old, old.Add(time.Hour), store.StepHour)
	must(t, err, "UsageHistory old hour")
	if hours[0].Up != 0 || hours[0].Down != 0 {
		t.Errorf("an hour past retention holds %+v", hours[0])
	}
	days, err = s.UsageHistory(ctx, a.ID, old, old.Add(time.Hour), store.StepDay)
	must(t, err, "UsageHistory old day")
	if len(days) != 1 || days[0].Up != 5 || days[0].Down != 6 {
		t.Errorf("the day of an hour past hourly retention = %+v, want 5/6", days)
	}
	ancient := hour.Add(-store.DailyRetention - 72*time.Hour)
	add(ancient, map[string]store.Usage{a.ID: {Up: 9}})
	days, err = s.UsageHistory(ctx, a.ID, ancient, ancient.Add(time.Hour), store.StepDay)
	must(t, err, "UsageHistory ancient day")
	if days[0].Up != 0 {
		t.Errorf("a day past retention holds %+v", days[0])
	}
	if u, _ := s.GetUsage(ctx, a.ID); u.Up != 101+5+9 {
		t.Errorf("old buckets changed the counters: %+v", u)
	}

	for _, c := range []struct {
		name     string
		from, to time.Time
		step     time.Duration
	}{
		{"bad step", hour, hour.Add(time.Hour), time.Minute},
		{"empty", hour, hour, store.StepHour},
		{"reversed", hour, hour.Add(-time.Hour), store.StepHour},
		{"too many hours", hour, hour.Add(time.Duration(store.MaxHistoryHours+1) * time.Hour), store.StepHour},
		{"too many days", day, day.AddDate(0, 0, store.MaxHistoryDays+1), store.StepDay},
	} {
		if _, err := s.UsageHistory(ctx, a.ID, c.from, c.to, c.step); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", c.name, err)
		}
	}
	if _, err := s.UsageHistory(ctx, store.NewID(), hour, hour.Add(time.Hour), store.StepHour); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown token: err = %v, want ErrNotFound", err)
	}
}
