package store

import "time"

// Quota periods (Token.QuotaPeriod). A token with a period compares its
// quota with the usage of the current period only; the usage of ended
// periods is kept (PastPeriods, at most MaxPastPeriods).
const (
	PeriodNone  = ""
	PeriodDay   = "day"
	PeriodWeek  = "week"
	PeriodMonth = "month"
)

// Anchors of a period (Token.QuotaAnchor). Every period starts at 00:00
// UTC. Calendar periods are UTC days, weeks from Monday and months from
// the 1st; created-anchored weeks start on the weekday the token was
// created, months on its day of the month, or on the last day of a
// month too short for it (created on the 31st: the 30th of April, the
// 28th or 29th of February).
const (
	AnchorCalendar = ""
	AnchorCreated  = "created"
)

// MaxPastPeriods is how many ended periods a token's usage keeps.
const MaxPastPeriods = 24

// ValidPeriod reports whether period and anchor can be stored.
func ValidPeriod(period, anchor string) bool {
	switch period {
	case PeriodNone, PeriodDay, PeriodWeek, PeriodMonth:
	default:
		return false
	}
	return anchor == AnchorCalendar || anchor == AnchorCreated
}

// PeriodBounds returns the period of a token created at created that
// holds at: [start, end). Both are zero for PeriodNone (one period
// forever). The Redis store computes the same in Lua; the conformance
// suite checks that they agree.
func PeriodBounds(period, anchor string, created, at time.Time) (start, end time.Time) {
	at = at.UTC()
	day := time.Date(at.Year(), at.Month(), at.Day(), 0, 0, 0, 0, time.UTC)
	created = created.UTC()
	switch period {
	case PeriodDay:
		return day, day.AddDate(0, 0, 1)
	case PeriodWeek:
		first := time.Monday
		if anchor == AnchorCreated {
			first = created.Weekday()
		}
		back := (int(day.Weekday()) - int(first) + 7) % 7
		start = day.AddDate(0, 0, -back)
		return start, start.AddDate(0, 0, 7)
	case PeriodMonth:
		dom := 1
		if anchor == AnchorCreated {
			dom = created.Day()
		}
		y, m := at.Year(), at.Month()
		start = monthDay(y, m, dom)
		if start.After(at) {
			y, m = prevMonth(y, m)
			start = monthDay(y, m, dom)
		}
		ny, nm := nextMonth(y, m)
		return start, monthDay(ny, nm, dom)
	}
	return time.Time{}, time.Time{}
}

// monthDay is day dom of the month, or its last day if it is shorter.
func monthDay(y int, m time.Month, dom int) time.Time {
	last := time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
	return time.Date(y, m, min(dom, last), 0, 0, 0, 0, time.UTC)
}

func prevMonth(y int, m time.Month) (int, time.Month) {
	if m == time.January {
		return y - 1, time.December
	}
	return y, m - 1
}

func nextMonth(y int, m time.Month) (int, time.Month) {
	if m == time.December {
		return y + 1, time.January
	}
	return y, m + 1
}

// At is the usage that counts at now: zero once the period it was counted
// in has ended (no byte of the current period was written yet).
func (u Usage) At(now time.Time) Usage {
	if !u.Until.IsZero() && !now.Before(u.Until) {
		return Usage{}
	}
	return u
}

// PeriodUsage is the usage of one ended period (PastPeriods).
type PeriodUsage struct {
	Start, End time.Time
	Up, Down   int64
}

// History steps (UsageHistory) and how far back each is kept: hourly
// buckets for HourlyRetention, daily ones for DailyRetention. A query
// spans at most MaxHistoryHours hourly or MaxHistoryDays daily buckets.
const (
	StepHour = time.Hour
	StepDay  = 24 * time.Hour

	HourlyRetention = 90 * 24 * time.Hour
	DailyRetention  = 2 * 366 * 24 * time.Hour
	MaxHistoryHours = 31 * 24
	MaxHistoryDays  = 2 * 366
)

// Bucket is the usage of one hour or day starting at Start (UTC).
type Bucket struct {
	Start    time.Time
	Up, Down int64
}

// HistoryRange aligns [from, to) to step (from down, to up) and checks it:
// ErrInvalid for another step, an empty range or more buckets than the
// step allows. Both stores use it, so they answer the same.
func HistoryRange(from, to time.Time, step time.Duration) (time.Time, time.Time, int, error) {
	if step != StepHour && step != StepDay {
		return time.Time{}, time.Time{}, 0, ErrInvalid
	}
	from = from.UTC().Truncate(step)
	if t := to.UTC().Truncate(step); !t.Equal(to) {
		to = t.Add(step)
	} else {
		to = t
	}
	n := int(to.Sub(from) / step)
	limit := MaxHistoryHours
	if step == StepDay {
		limit = MaxHistoryDays
	}
	if n <= 0 || n > limit {
		return time.Time{}, time.Time{}, 0, ErrInvalid
	}
	return from, to, n, nil
}
