package api

import "github.com/httvps/httvps/store"

// The API's names of quota periods and anchors; the store's "" is "none"
// and "calendar".
const (
	periodNone     = "none"
	anchorCalendar = "calendar"
)

func periodName(p string) string {
	if p == store.PeriodNone {
		return periodNone
	}
	return p
}

func anchorName(a string) string {
	if a == store.AnchorCalendar {
		return anchorCalendar
	}
	return a
}

// parsePeriod reads quota_period ("" is none).
func parsePeriod(v string) (string, *apiError) {
	switch v {
	case "", periodNone:
		return store.PeriodNone, nil
	case store.PeriodDay, store.PeriodWeek, store.PeriodMonth:
		return v, nil
	}
	return "", invalid("quota_period must be none, day, week or month")
}

// parseAnchor reads quota_anchor ("" is calendar).
func parseAnchor(v string) (string, *apiError) {
	switch v {
	case "", anchorCalendar:
		return store.AnchorCalendar, nil
	case store.AnchorCreated:
		return v, nil
	}
	return "", invalid("quota_anchor must be calendar or created")
}
