package api

import (
	"context"
	"time"

	"github.com/valyala/fasthttp"
)

// readyTimeout bounds the store ping of /readyz: a probe must answer
// quickly even when the store hangs.
const readyTimeout = 2 * time.Second

type statusBody struct {
	Status string `json:"status"`
}

// healthz says the process serves HTTP; it never touches the store, so a
// store outage does not get the process restarted.
func (s *Server) healthz(ctx *fasthttp.RequestCtx) {
	writeJSON(ctx, fasthttp.StatusOK, statusBody{Status: "ok"})
}

// readyz says the process can do its job: the store answers.
func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	rctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := s.st.Ping(rctx); err != nil {
		s.writeError(ctx, &apiError{Status: fasthttp.StatusServiceUnavailable, Code: codeUnavailable, Message: "shared state is unavailable", Cause: err})
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, statusBody{Status: "ready"})
}
