package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/httvps/httvps/gateway/storeauth"
	"github.com/httvps/httvps/gateway/storemetrics"
	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/redisstore"
)

func TestStoreOptions(t *testing.T) {
	const redis = "redis://127.0.0.1:6379/0"
	const pub = "wss://gw1.example:443"
	o, err := loadOptions(fakeSources([]string{"-redis", redis, "-public-url", pub, "-gateway-id", "gw-1"}, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if o.Redis != redis || o.PublicURL != pub || o.GatewayID != "gw-1" || len(o.Routes) != 0 {
		t.Errorf("flags: %+v", o)
	}

	env := map[string]string{"HTTVPS_REDIS": "rediss://:pw@10.0.0.1:6380/1", "HTTVPS_PUBLIC_URL": pub}
	if o, err = loadOptions(fakeSources(nil, env, nil)); err != nil || o.Redis != env["HTTVPS_REDIS"] || o.PublicURL != pub {
		t.Errorf("environment: %+v, %v", o, err)
	}

	file := "redis: " + redis + "\npublic-url: " + pub + "\ngateway-id: from-file\nroutes:\n  s3cret: 127.0.0.1:1\n"
	o, err = loadOptions(fakeSources([]string{"-config", "gw.yaml"}, nil, map[string]string{"gw.yaml": file}))
	if err != nil || o.Redis != redis || o.GatewayID != "from-file" || len(o.Routes) != 1 {
		t.Errorf("config file: %+v, %v", o, err)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no public url", []string{"-redis", redis}, "-public-url is required"},
		{"bad scheme", []string{"-redis", "http://127.0.0.1:6379", "-public-url", pub}, "not redis or rediss"},
		{"no host", []string{"-redis", "redis://", "-public-url", pub}, "no host"},
		{"public url not wss", []string{"-redis", redis, "-public-url", "gw1.example:443"}, "not a wss://host:port"},
		{"public url without redis", []string{"-route", oneRoute, "-public-url", pub}, "need -redis"},
		{"gateway id without redis", []string{"-route", oneRoute, "-gateway-id", "x"}, "need -redis"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadOptions(fakeSources(tc.args, nil, nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}

	// The Redis password never shows in errors or usage.
	_, err = loadOptions(fakeSources([]string{"-redis", "http://:hunter2pw@127.0.0.1:1", "-public-url", pub}, nil, nil))
	if err == nil || strings.Contains(err.Error(), "hunter2pw") {
		t.Errorf("error shows the password: %v", err)
	}
	var out strings.Builder
	src := fakeSources([]string{"-redis", "redis://:hunter2pw@127.0.0.1:1", "-h"}, nil, nil)
	src.usage = &out
	loadOptions(src)
	for _, want := range []string{"-redis", "HTTVPS_REDIS", "-public-url", "HTTVPS_PUBLIC_URL", "-gateway-id", "HTTVPS_GATEWAY_ID"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "hunter2pw") {
		t.Error("usage shows the password")
	}
}

// The binary with -redis serves tokens from the store next to its static
// routes, registers itself, and on SIGTERM flushes usage and deregisters.
func TestRunWithRedis(t *testing.T) {
	ctx, url, st, up, secret, tok := redisWithToken(t, 0)

	addr := freePort(t)
	var log syncBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- run(osSources([]string{
			"-redis", url, "-public-url", "wss://gw.example:443", "-gateway-id", "gw-test",
			"-route", "static0=" + up, "-listen", addr, "-admin-listen", "", "-drain-timeout", "1s",
		}), &log)
	}()
	waitLog(t, &log, "gateway serving")
	stopped := false
	defer func() {
		if !stopped {
			syscall.Kill(os.Getpid(), syscall.SIGTERM)
			<-exit
		}
	}()

	for _, s := range []string{"static0", secret} {
		c, _, _, err := ws.Dialer{Timeout: 5 * time.Second}.Dial(ctx, "ws://"+addr+"/"+s+"/tcp")
		if err != nil {
			t.Fatalf("session: %v\n%s", err, log.String())
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if err := wsutil.WriteClientBinary(c, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if b, err := wsutil.ReadServerBinary(c); err != nil || string(b) != "hello" {
			t.Fatalf("echo %q, %v", b, err)
		}
		ws.WriteFrame(c, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
		c.Close()
	}
	if _, _, _, err := (ws.Dialer{Timeout: 5 * time.Second}).Dial(ctx, "ws://"+addr+"/"+store.NewID()+"/tcp"); err == nil {
		t.Fatal("unknown token admitted")
	}
	gws, err := st.ListGateways(ctx)
	if err != nil || len(gws) != 1 || gws[0].ID != "gw-test" || gws[0].PublicURL != "wss://gw.example:443" || !gws[0].Live || gws[0].Version == "" {
		t.Fatalf("registrations %+v, %v", gws, err)
	}

	// The gateway serves the token's Outline document itself, naming the
	// registered public URL; an unknown secret gets the decoy 404.
	resp, err := http.Get("http://" + addr + "/v1/outline/" + secret)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Server") != "nginx" || !strings.Contains(string(body), "url: wss://gw.example:443/"+secret+"/tcp") {
		t.Errorf("document from the gateway: %d %q", resp.StatusCode, body)
	}
	if resp, err := http.Get("http://" + addr + "/v1/outline/" + store.NewID()); err != nil || resp.StatusCode != 404 {
		t.Errorf("unknown secret: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	var metrics strings.Builder
	storemetrics.Write(&metrics, storeauth.Stats{CacheMisses: 1})
	if !strings.Contains(metrics.String(), `httvps_gateway_store_token_cache_total{result="miss"} 1`) ||
		!strings.Contains(metrics.String(), `httvps_gateway_store_denied_total{reason="quota"} 0`) {
		t.Errorf("metrics:\n%s", metrics.String())
	}

	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	stopped = true
	if code := <-exit; code != 0 {
		t.Fatalf("exit %d after SIGTERM, log:\n%s", code, log.String())
	}
	if u, err := st.GetUsage(ctx, tok.ID); err != nil || u.Total() != 10 {
		t.Errorf("usage after exit %+v, %v; want 10 bytes", u, err)
	}
	if gws, err := st.ListGateways(ctx); err != nil || len(gws) != 0 {
		t.Errorf("registrations after exit %+v, %v", gws, err)
	}
}

func echoUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						c.Write(buf[:n])
					}
					if err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// redisWithToken starts redis-server with a store on it and an echo
// upstream, and creates a token (with maxSessions) routed there.
func redisWithToken(t *testing.T, maxSessions int) (ctx context.Context, url string, st *redisstore.Store, up, secret string, tok store.Token) {
	t.Helper()
	url = testpeer.StartRedis(t, testpeer.RedisSpec{}).URL()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	st, err := redisstore.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	up = echoUpstream(t)
	secret = store.NewID()
	tok = store.Token{ID: store.NewID(), Hash: store.HashToken(secret), MaxSessions: maxSessions,
		Assignments: []store.Assignment{{MemberID: "m1", Upstream: up}}}
	if err := st.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	return ctx, url, st, up, secret, tok
}
