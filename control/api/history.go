package api

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/httvps/httvps/store"
)

// Defaults of a history query without from: the last day by hour, the
// last 30 days by day.
const (
	defaultHourRange = 24 * time.Hour
	defaultDayRange  = 30 * 24 * time.Hour
)

// tokenUsage answers GET /v1/tokens/{id}/usage.
func (s *Server) tokenUsage(ctx *fasthttp.RequestCtx) {
	s.usageHistory(ctx, pathParam(ctx, "id"))
}

// fleetUsage answers GET /v1/usage: the whole fleet's history.
func (s *Server) fleetUsage(ctx *fasthttp.RequestCtx) {
	s.usageHistory(ctx, "")
}

// usageHistory reads ?from=&to=&step= (RFC 3339 times, hour or day; to
// defaults to now, from to a day or 30 days before it) and answers with
// one bucket per step, aligned to whole UTC hours or days.
func (s *Server) usageHistory(ctx *fasthttp.RequestCtx, id string) {
	args := ctx.QueryArgs()
	step, stepName := store.StepHour, "hour"
	switch v := string(args.Peek("step")); v {
	case "", "hour":
	case "day":
		step, stepName = store.StepDay, "day"
	default:
		s.writeError(ctx, invalid("step must be hour or day"))
		return
	}
	parse := func(name string, def time.Time) (time.Time, *apiError) {
		raw := args.Peek(name)
		if len(raw) == 0 {
			return def, nil
		}
		t, err := time.Parse(time.RFC3339, string(raw))
		if err != nil {
			return t, invalid("%s must be an RFC 3339 time like 2030-01-02T15:04:05Z", name)
		}
		return t, nil
	}
	to, e := parse("to", s.now())
	if e != nil {
		s.writeError(ctx, e)
		return
	}
	def := defaultHourRange
	if step == store.StepDay {
		def = defaultDayRange
	}
	from, e := parse("from", to.Add(-def))
	if e != nil {
		s.writeError(ctx, e)
		return
	}
	from, to, _, err := store.HistoryRange(from, to, step)
	if err != nil {
		s.writeError(ctx, invalid("from must be before to, and the range at most %d hours by hour or %d days by day", store.MaxHistoryHours, store.MaxHistoryDays))
		return
	}
	rctx, cancel := s.reqCtx()
	defer cancel()
	bs, err := s.st.UsageHistory(rctx, id, from, to, step)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "token"))
		return
	}
	out := usageHistory{TokenID: id, Step: stepName, From: from, To: to, Buckets: make([]bucketView, 0, len(bs))}
	for _, b := range bs {
		out.Buckets = append(out.Buckets, bucketView{Start: b.Start, Up: b.Up, Down: b.Down, Total: b.Up + b.Down})
		out.Total.Up += b.Up
		out.Total.Down += b.Down
	}
	out.Total.Total = out.Total.Up + out.Total.Down
	writeJSON(ctx, fasthttp.StatusOK, out)
}
