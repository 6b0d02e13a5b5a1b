package storeauth

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/store"
)

// TestMetricsPerToken: with MetricsPerToken 2, the first two tokens that
// move bytes get their own series with exactly their bytes, a third one's
// bytes go to token="other"; with it off there are no per-token series.
func TestMetricsPerToken(t *testing.T) {
	r := startRedis(t)
	st := openStore(t, r)
	a := New(st, Config{Logger: quiet, MetricsPerToken: 2})
	f := &flusher{a: a, pending: map[string]store.Usage{}}
	var ids []string
	for i := range 3 {
		secret, tok := newToken(t, st, []string{"127.0.0.1:1"}, nil)
		route, _, ok := a.Authenticate([]byte(secret), gateway.PathTCP, gateway.Client{})
		if !ok {
			t.Fatal("token denied")
		}
		route.Account.AddUsage(int64(100*(i+1)), int64(1000*(i+1)))
		route.Account.Release()
		ids = append(ids, tok.ID)
		// One flush per token, so the first two are the ones kept.
		if err := f.flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	a.WriteTokenSeries(&b)
	for i, id := range ids[:2] {
		for _, want := range []string{
			fmt.Sprintf(`httvps_gateway_store_token_bytes_total{token="%s",direction="up"} %d`, id, 100*(i+1)),
			fmt.Sprintf(`httvps_gateway_store_token_bytes_total{token="%s",direction="down"} %d`, id, 1000*(i+1)),
		} {
			if !strings.Contains(b.String(), want+"\n") {
				t.Errorf("no %s in\n%s", want, b.String())
			}
		}
	}
	if strings.Contains(b.String(), ids[2]) || strings.Count(b.String(), "\n") != 4 {
		t.Errorf("past the cap a token has its own series:\n%s", b.String())
	}
	if s := a.Stats(); s.TokenOtherUp != 300 || s.TokenOtherDown != 3000 {
		t.Errorf("overflow %d/%d, want 300/3000", s.TokenOtherUp, s.TokenOtherDown)
	}

	off := New(st, Config{Logger: quiet})
	b.Reset()
	off.WriteTokenSeries(&b)
	if b.Len() != 0 {
		t.Errorf("series with MetricsPerToken 0: %s", b.String())
	}
}
