package redisstore

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// SetLogger sends go-redis's own messages — a Sentinel failover
// ("sentinel: new master=…"), failed dials, a dropped subscription — to log
// at info level, instead of go-redis's default (the standard logger, on
// stderr, outside the binaries' format and level). The logger is global to
// go-redis: a binary sets it once. go-redis prints addresses, never
// passwords.
func SetLogger(log *slog.Logger) { redis.SetLogger(goRedisLog{log}) }

type goRedisLog struct{ log *slog.Logger }

func (l goRedisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.InfoContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}
