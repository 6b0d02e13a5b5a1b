package api

import (
	"errors"
	"os"
	"strconv"

	"github.com/valyala/fasthttp"
)

// backup answers GET /v1/backup with a consistent copy of the store's file
// (Config.Snapshot). The copy goes to an unlinked temporary file first, so
// the store's read transaction lasts as long as a local disk write, never
// as long as a slow client, and a failed snapshot is a 5xx rather than a
// truncated 200. The length is sent, so a cut transfer shows as short.
func (s *Server) backup(ctx *fasthttp.RequestCtx) {
	if s.cfg.Snapshot == nil {
		s.writeError(ctx, &apiError{Status: fasthttp.StatusNotImplemented, Code: codeNotImplemented,
			Message: "this control plane's store has no backup through the API (Redis: back up Redis itself)"})
		return
	}
	f, err := os.CreateTemp(s.cfg.SnapshotDir, ".httvps-backup-*")
	if err != nil {
		s.writeError(ctx, &apiError{Status: fasthttp.StatusInternalServerError, Code: codeInternal, Message: "internal error", Cause: err})
		return
	}
	// Linux keeps an unlinked file until it is closed: nothing is left
	// behind by a crash, and nobody else can open the copy.
	os.Remove(f.Name())
	rctx, cancel := s.reqCtx()
	n, err := s.cfg.Snapshot(rctx, f)
	cancel()
	if err == nil {
		_, err = f.Seek(0, 0)
	}
	if err == nil && n > int64(^uint(0)>>1) {
		err = errors.New("snapshot too large")
	}
	if err != nil {
		f.Close()
		s.writeError(ctx, fromStoreErr(err, "store"))
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/octet-stream")
	ctx.Response.Header.Set("Content-Disposition", `attachment; filename="httvps-backup.db"`)
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.Response.Header.Set("X-Httvps-Backup-Bytes", strconv.FormatInt(n, 10))
	ctx.SetBodyStream(f, int(n)) // fasthttp closes f once it is sent
}
