package redisstore

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/httvps/httvps/store"
)

// hist names the history buckets of one instant: the hash of its UTC day
// (fields "<HH>u", "<HH>d") and of its month (fields "<DD>u", "<DD>d"),
// and when each hash expires (unix s): a day's hours are kept
// store.HourlyRetention after the day ends, a month's days
// store.DailyRetention after the month ends.
type hist struct {
	day, month            string
	hourField, dayField   string
	hourExpiry, dayExpiry int64
}

func histBuckets(at time.Time) hist {
	at = at.UTC()
	day := time.Date(at.Year(), at.Month(), at.Day(), 0, 0, 0, 0, time.UTC)
	month := time.Date(at.Year(), at.Month(), 1, 0, 0, 0, 0, time.UTC)
	return hist{
		day: at.Format("20060102"), month: at.Format("200601"),
		hourField: at.Format("15"), dayField: at.Format("02"),
		hourExpiry: day.AddDate(0, 0, 1).Add(store.HourlyRetention).Unix(),
		dayExpiry:  month.AddDate(0, 1, 0).Add(store.DailyRetention).Unix(),
	}
}

// UsageHistory implements store.Store: one HGETALL per day (hour steps,
// at most 32) or per month (day steps, at most 26), in one round trip.
func (s *Store) UsageHistory(ctx context.Context, id string, from, to time.Time, step time.Duration) ([]store.Bucket, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	from, to, n, err := store.HistoryRange(from, to, step)
	if err != nil {
		return nil, err
	}
	hourKey, dayKey := s.key("fh:"), s.key("fd:")
	if id != "" {
		hourKey, dayKey = s.key("uh:", id, ":"), s.key("ud:", id, ":")
	}
	pipe := s.rdb.Pipeline()
	var exists *redis.IntCmd
	if id != "" {
		exists = pipe.Exists(ctx, s.key("tok:", id))
	}
	hashes := make(map[string]*redis.MapStringStringCmd)
	out := make([]store.Bucket, n)
	for i := range out {
		t := from.Add(time.Duration(i) * step)
		out[i].Start = t
		k := dayKey + t.Format("200601")
		if step == store.StepHour {
			k = hourKey + t.Format("20060102")
		}
		if hashes[k] == nil {
			hashes[k] = pipe.HGetAll(ctx, k)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, s.wrap("usage history", err)
	}
	if exists != nil && exists.Val() == 0 {
		return nil, notFound("usage history")
	}
	keep := time.Now().Add(-store.DailyRetention)
	if step == store.StepHour {
		keep = time.Now().Add(-store.HourlyRetention)
	}
	for i := range out {
		t := out[i].Start
		if t.Before(keep) {
			continue // past retention; its hash may outlive it by a day or a month
		}
		k, f := dayKey+t.Format("200601"), t.Format("02")
		if step == store.StepHour {
			k, f = hourKey+t.Format("20060102"), t.Format("15")
		}
		m := hashes[k].Val()
		out[i].Up, out[i].Down = atoi(m[f+"u"]), atoi(m[f+"d"])
	}
	return out, nil
}
