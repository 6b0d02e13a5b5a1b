package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/httvps/httvps/client"
	"github.com/httvps/httvps/control/api/wire"
	"github.com/httvps/httvps/internal/cliconf"
)

// keyOpts are `httvps key`'s flags.
type keyOpts struct {
	control, token, cacert, dataDir, qr string
	insecure, json                      bool
}

func (o *keyOpts) register(fs *flag.FlagSet) {
	fs.StringVar(&o.token, "token", o.token, "client `token` whose keys to print ["+cliconf.EnvName("token")+"]")
	fs.StringVar(&o.control, "control", o.control, "control plane `URL` to ask with -token ["+cliconf.EnvName("control")+"] (default "+defaultControlURL+")")
	fs.StringVar(&o.cacert, "cacert", o.cacert, "PEM `file` to trust for the control plane ["+cliconf.EnvName("cacert")+"] (default DATA-DIR/ca.pem, the CA of httvps up, when it exists)")
	fs.BoolVar(&o.insecure, "insecure", o.insecure, "do not verify the control plane's certificate")
	fs.StringVar(&o.dataDir, "data-dir", o.dataDir, "`directory` of a local `httvps up`, for the default certificate ["+cliconf.EnvName("data-dir")+"]")
	fs.StringVar(&o.qr, "qr", o.qr, "which key to show as a QR code: `ssconf`, httvps, ss or none (default ssconf, else httvps; only on a terminal unless given)")
	fs.BoolVar(&o.json, "json", o.json, `print {"ss","ssconf","httvps"} as JSON, no QR code`)
}

func keyUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `Usage: httvps key [flags] -token TOKEN     (asks the control plane)
       httvps key [flags] KEY               (an httvps://, ss:// or ssconf:// key)

Prints the token's ss://, ssconf:// and httvps:// keys, and one of them as a
QR code on a terminal. The keys hold the token and the Shadowsocks secret:
hand them only to their user.

Flags:
`)
	fs.PrintDefaults()
}

func runKey(ctx context.Context, args []string, e env) int {
	o := &keyOpts{}
	fs := flag.NewFlagSet("httvps key", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	o.register(fs)
	fs.Usage = func() { keyUsage(e.stderr, fs) }
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	qrSet := o.qr != ""
	switch o.qr {
	case "", "ssconf", "httvps", "ss", "none":
	default:
		fmt.Fprintf(e.stderr, "httvps key: -qr %q: want ssconf, httvps, ss or none\n", o.qr)
		return exitUsage
	}
	token := firstNonEmpty(o.token, e.getenv(cliconf.EnvName("token")))
	if len(pos) > 1 {
		fmt.Fprintln(e.stderr, "httvps key: give -token TOKEN or one KEY")
		fs.Usage()
		return exitUsage
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var keys wire.AccessKeys
	if len(pos) == 1 {
		keys, err = keysOfKey(cctx, pos[0], token)
	} else {
		if token == "" {
			fmt.Fprintln(e.stderr, "httvps key: give -token TOKEN (or "+cliconf.EnvName("token")+") or one KEY")
			return exitUsage
		}
		keys, err = keysFromControl(cctx, o, e, token)
	}
	if err != nil {
		var ce *client.ControlError
		var ae *apiError
		switch {
		case errors.As(err, &ce):
			fmt.Fprintf(e.stderr, "error: %s\n", ce.Reason())
		case errors.As(err, &ae) && ae.Code == "http_404":
			fmt.Fprintln(e.stderr, "error: the control plane does not accept the token: it is unknown, revoked or expired (404, as for any unknown request)")
		case errors.Is(err, client.ErrBadKey):
			fmt.Fprintf(e.stderr, "httvps key: %s\n", printable(strings.TrimPrefix(err.Error(), "client: ")))
			return exitUsage
		default:
			fmt.Fprintf(e.stderr, "error: %s\n", printable(err.Error()))
		}
		return exitFail
	}
	if o.json {
		b, _ := json.MarshalIndent(keys, "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", escapeJSONControls(b))
		return exitOK
	}
	tb := newTable(e.stdout, "KEY", "VALUE")
	for _, kv := range [][2]string{{"ss", keys.SS}, {"ssconf", keys.SSConf}, {"httvps", keys.HTTVPS}} {
		if kv[1] != "" {
			tb.row(kv[0], kv[1])
		}
	}
	tb.flush()
	which := o.qr
	if which == "" {
		which = "ssconf"
		if keys.SSConf == "" {
			which = "httvps"
		}
	}
	if which == "none" || (!qrSet && !isTerminal(e.stdout)) {
		return exitOK
	}
	text := map[string]string{"ss": keys.SS, "ssconf": keys.SSConf, "httvps": keys.HTTVPS}[which]
	if text == "" {
		fmt.Fprintf(e.stderr, "httvps key: this key has no %s form\n", which)
		return exitFail
	}
	qr, err := renderQR(text)
	if err != nil {
		fmt.Fprintf(e.stderr, "httvps key: QR code: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(e.stdout, "\n%s  %s (%s)\n", qr, which, map[string]string{
		"ssconf": "scan with an Outline app", "ss": "a Shadowsocks client; through a gateway, ss-local with v2ray-plugin", "httvps": "httvps connect",
	}[which])
	return exitOK
}

// keysFromControl asks GET /v1/client/config with the token: the keys the
// control plane writes, as it writes them.
func keysFromControl(ctx context.Context, o *keyOpts, e env, token string) (wire.AccessKeys, error) {
	dataDir := firstNonEmpty(o.dataDir, e.getenv(cliconf.EnvName("data-dir")), defaultDataDir(e))
	control := firstNonEmpty(o.control, e.getenv(cliconf.EnvName("control")), defaultControlURL)
	tlsConf, err := controlTLS(o.cacert, o.insecure, dataDir, control, e)
	if err != nil {
		return wire.AccessKeys{}, err
	}
	c, err := newAPIClient(control, "", tlsConf, "")
	if err != nil {
		return wire.AccessKeys{}, err
	}
	defer c.close()
	raw, err := c.callAs(ctx, token, http.MethodGet, "/v1/client/config", nil, nil)
	if err != nil {
		return wire.AccessKeys{}, err
	}
	var cfg wire.ClientConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return wire.AccessKeys{}, fmt.Errorf("the client config is not JSON: %w", err)
	}
	return cfg.AccessKeys, nil
}

// keysOfKey is the keys of a key given on the command line: the control
// plane's own when the key names one (and it answers), else derived from
// the key itself.
func keysOfKey(ctx context.Context, text, token string) (wire.AccessKeys, error) {
	k, err := client.ResolveKey(ctx, text, client.ResolveOptions{Token: token})
	if err != nil {
		return wire.AccessKeys{}, err
	}
	if k.Control != "" && k.Token != "" {
		if cfg, err := (&client.Fetcher{}).ClientConfig(ctx, k); err == nil {
			return cfg.AccessKeys, nil
		} else if ce := (*client.ControlError)(nil); errors.As(err, &ce) {
			return wire.AccessKeys{}, err
		}
	}
	var keys wire.AccessKeys
	keys.SS, _ = k.SS()
	keys.SSConf, _ = k.SSConf()
	keys.HTTVPS, _ = k.HTTVPS()
	return keys, nil
}
