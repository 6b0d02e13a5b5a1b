package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// checkLabel names a token-check run for people.
func checkLabel(c TokenCheckResult) string {
	switch c.Path {
	case checkHit:
		return "cache hit"
	case checkDeviceLive:
		return "cache hit, device limit, device live here"
	case checkDeviceNew:
		return "cache hit, device limit, new device (Redis AcquireDevice)"
	}
	return "cache miss (Redis GetTokenByHash)"
}

func (r *Report) writeControlText(w io.Writer) {
	c := r.Control
	if c == nil {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "\ncontrol (%s)\n", c.Redis)
	if len(c.TokenChecks) > 0 {
		fmt.Fprintln(tw, "token check (storeauth.Authenticate + Release)\tgoroutines\ttokens\tchecks/s\tns/op\tallocs/op\tstore calls/op\t")
		for _, x := range c.TokenChecks {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.0f\t%.2f\t%.3f\t\n", checkLabel(x), x.Goroutines, x.Tokens, x.PerSecond, x.NsPerOp, x.AllocsPerOp, x.StoreCallsPerOp)
		}
		tw.Flush()
	}
	if x := c.ClientConfig; x != nil {
		fmt.Fprintln(tw, "route\tconnections\treq/s\tp50 ms\tp99 ms\tp99.9 ms\tserver CPU ms/req\t")
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.3f\t\n", x.Route, x.Connections, x.PerSecond, x.P50Ms, x.P99Ms, x.P999Ms, x.CPUmsPerReq)
		tw.Flush()
	}
	if len(c.RedisBenchmark) > 0 {
		fmt.Fprintf(w, "%s\n", c.RedisBenchmarkCommand)
		fmt.Fprintln(tw, "redis-benchmark\treq/s\tp50 ms\t")
		for _, x := range c.RedisBenchmark {
			fmt.Fprintf(tw, "%s\t%.0f\t%.3f\t\n", x.Test, x.PerSecond, x.P50Ms)
		}
		tw.Flush()
	}
}

func (r *Report) writeControlMarkdown(w io.Writer) {
	c := r.Control
	if c == nil {
		return
	}
	fmt.Fprintf(w, "\n## Control plane and shared state\n\nOne redis-server (%s) started by the harness on loopback, no persistence.\n", c.Redis)
	if len(c.TokenChecks) > 0 {
		fmt.Fprintf(w, "\n### Token checks on the gateway's hot path\n\n`storeauth.Authenticate` followed by the session's `Release`, called in the harness process "+
			"(GOMAXPROCS %d) on %d stored tokens, each run %.0f s with the authenticator's background loops running. "+
			"Hit: every token cached beforehand, no device limit. Device live: tokens with max_devices, cached, the client's device already live on this gateway "+
			"(one session held per token), so the check costs no store call. Device new: the same tokens, a new client address each check, "+
			"so each check takes a device lease in Redis (released in the background). Miss: a positive cache that is stale at once, so each check is a `GetTokenByHash` round trip to Redis "+
			"(tokens without a quota: no `GetUsage`); each goroutine cycles through its own tokens, so no lookup waits on another's. "+
			"ns/op = goroutines × wall time / checks.\n\n", c.TokenChecks[0].Goroutines, c.TokenChecks[0].Tokens, c.TokenChecks[0].Seconds)
		fmt.Fprintln(w, "| path | goroutines | checks/s | ns/op | allocs/op | store calls/op |\n| --- | ---: | ---: | ---: | ---: | ---: |")
		for _, x := range c.TokenChecks {
			fmt.Fprintf(w, "| %s | %d | %.0f | %.0f | %.2f | %.3f |\n", checkLabel(x), x.Goroutines, x.PerSecond, x.NsPerOp, x.AllocsPerOp, x.StoreCallsPerOp)
		}
	}
	if x := c.ClientConfig; x != nil {
		fmt.Fprintf(w, "\n### Client API\n\n`%s` with a valid token against `%s` on the same Redis (two gateways registered), "+
			"%d keep-alive HTTP/1.1 connections (fasthttp client), each sending its next request when the answer is in, for %.0f s after a 0.5 s warm-up. "+
			"Each request reads the token, its usage and the gateway list from Redis. CPU is the httvps-control process's.\n\n",
			x.Route, x.Command, x.Connections, x.Seconds)
		fmt.Fprintln(w, "| route | connections | requests | req/s | p50 ms | p99 ms | p99.9 ms | server CPU ms/req |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
		fmt.Fprintf(w, "| %s | %d | %d | %.0f | %.2f | %.2f | %.2f | %.3f |\n", x.Route, x.Connections, x.Requests, x.PerSecond, x.P50Ms, x.P99Ms, x.P999Ms, x.CPUmsPerReq)
	}
	if len(c.RedisBenchmark) > 0 {
		fmt.Fprintf(w, "\n### Redis itself, for scale\n\n`%s` (50 connections, its defaults) against the same redis-server.\n\n", c.RedisBenchmarkCommand)
		fmt.Fprintln(w, "| test | req/s | p50 ms |\n| --- | ---: | ---: |")
		for _, x := range c.RedisBenchmark {
			fmt.Fprintf(w, "| %s | %.0f | %.3f |\n", x.Test, x.PerSecond, x.P50Ms)
		}
	}
}
