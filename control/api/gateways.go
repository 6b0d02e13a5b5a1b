package api

import (
	"github.com/valyala/fasthttp"
)

func (s *Server) listGateways(ctx *fasthttp.RequestCtx) {
	rctx, cancel := s.reqCtx()
	defer cancel()
	gws, err := s.st.ListGateways(rctx)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "gateway"))
		return
	}
	out := gatewayList{Gateways: make([]gatewayView, 0, len(gws))}
	for _, g := range gws {
		out.Gateways = append(out.Gateways, gatewayView{
			ID: g.ID, PublicURL: g.PublicURL, Sessions: g.Sessions,
			Started: g.Started.UTC(), LastHeartbeat: g.LastHeartbeat.UTC(),
			ExpiresAt: g.ExpiresAt.UTC(), Live: g.Live, Version: g.Version,
			HandshakesPerSec: g.HandshakesPerSec,
		})
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
}
