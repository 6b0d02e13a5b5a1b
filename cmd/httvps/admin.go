package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/httvps/httvps/control/console"
	"github.com/httvps/httvps/internal/cliconf"
)

const defaultControlURL = "https://127.0.0.1:9443"

// adminOpts are the flags every `httvps admin` command takes, before or
// after the command words.
type adminOpts struct {
	control      string
	adminKey     string
	adminKeyFile string
	cacert       string
	insecure     bool
	json         bool
	dataDir      string
}

// register adds the common flags to fs, keeping values already parsed
// (from flags given before the command words) as defaults.
func (o *adminOpts) register(fs *flag.FlagSet) {
	fs.StringVar(&o.control, "control", o.control, "control plane `URL` ["+cliconf.EnvName("control")+"] (default "+defaultControlURL+")")
	fs.StringVar(&o.adminKey, "admin-key", o.adminKey, "admin `key` ["+cliconf.EnvName("admin-key")+"]; prefer -admin-key-file, command lines are visible to other users")
	fs.StringVar(&o.adminKeyFile, "admin-key-file", o.adminKeyFile, "`file` holding the admin key ["+cliconf.EnvName("admin-key-file")+"] (default DATA-DIR/admin.key when it exists)")
	fs.StringVar(&o.cacert, "cacert", o.cacert, "PEM `file` of the CA or self-signed certificate to trust ["+cliconf.EnvName("cacert")+"] (default DATA-DIR/ca.pem, the CA of httvps up, when it exists)")
	fs.BoolVar(&o.insecure, "insecure", o.insecure, "do not verify the control plane's certificate")
	fs.BoolVar(&o.json, "json", o.json, "print the API's JSON answer instead of a table")
	fs.StringVar(&o.dataDir, "data-dir", o.dataDir, "`directory` of a local `httvps up`, for the default key and certificate ["+cliconf.EnvName("data-dir")+"]")
}

// adminCmd is one leaf command: its words, flags and action.
type adminCmd struct {
	words string // "tokens create"
	args  string // positional arguments, for usage
	help  string
	flags func(fs *flag.FlagSet, v *adminVals)
	nArgs int
	// check validates the parsed flags locally: its error is a usage error
	// (exit 2) before anything is sent.
	check func(v *adminVals) error
	do    func(a *adminRun) error
}

// adminVals hold command-specific flag values.
type adminVals struct {
	label, ttl, expiresAt, cipher, cursor string
	period, anchor                        string
	from, to, step                        string
	quota                                 byteSize
	maxSessions, maxDevices, limit        int
	member                                memberFlags
	// patch holds the fields tokens edit sends: only the flags given.
	patch map[string]any
}

// adminRun is one command invocation.
type adminRun struct {
	ctx  context.Context
	e    env
	opts *adminOpts
	vals *adminVals
	args []string
	c    *apiClient
}

var adminCmds = []adminCmd{
	{words: "tokens create", help: "issue a token; prints the token and its access keys once",
		flags: func(fs *flag.FlagSet, v *adminVals) {
			fs.StringVar(&v.label, "label", "", "a `label` for people")
			fs.StringVar(&v.ttl, "ttl", "", "expire after this `duration` (30d, 720h, 90m)")
			fs.StringVar(&v.expiresAt, "expires-at", "", "expire at this RFC 3339 `time`")
			fs.Var(&v.quota, "quota", "data quota, a `size` like 10GiB or 10GB (0: unlimited)")
			fs.IntVar(&v.maxDevices, "max-devices", 0, "devices using the token at once across the fleet: client addresses on the Outline paths, installations of the native client (0: unlimited)")
			fs.IntVar(&v.maxSessions, "max-sessions", 0, "concurrent WebSocket sessions across the fleet; on the Outline paths one per TCP connection, so a browser needs dozens: limit devices instead (0: unlimited)")
			fs.StringVar(&v.period, "period", "", "quota `period`: none (default), day, week, month; the quota counts the current period")
			fs.StringVar(&v.anchor, "anchor", "", "periods from the UTC `calendar` (default) or from the token's creation date (created)")
			fs.StringVar(&v.cipher, "cipher", "", "Shadowsocks `method`: chacha20-ietf-poly1305 (default), aes-128-gcm, aes-192-gcm, aes-256-gcm")
		}, check: checkTokenFlags, do: tokensCreate},
	{words: "tokens list", help: "list tokens, oldest first",
		flags: func(fs *flag.FlagSet, v *adminVals) {
			fs.IntVar(&v.limit, "limit", 0, "tokens per page, 1 to 1000 (default 100)")
			fs.StringVar(&v.cursor, "cursor", "", "`cursor` of the page to show, as printed after the previous one")
		}, do: tokensList},
	{words: "tokens show", args: "ID", nArgs: 1, help: "show a token with its usage, live sessions and live devices", do: tokensShow},
	{words: "tokens revoke", args: "ID", nArgs: 1, help: "revoke a token; its live sessions are closed on every gateway", do: tokensRevoke},
	{words: "tokens edit", args: "ID", nArgs: 1, help: "change a live token: only the flags given change, on every gateway within a second",
		flags: editFlags, check: checkEditFlags, do: tokensEdit},
	{words: "tokens reset", args: "ID", nArgs: 1, help: "zero the usage of the token's current quota period", do: tokensReset},
	{words: "tokens rotate", args: "ID", nArgs: 1, help: "a new secret for the token (same limits, usage and keys' placement); the old one stops and its sessions close", do: tokensRotate},
	{words: "tokens usage", args: "ID", nArgs: 1, help: "the token's usage by hour or day", flags: historyFlags, do: tokensUsage},
	{words: "fleet usage", help: "the whole fleet's usage by hour or day", flags: historyFlags, do: fleetUsage},
	{words: "pool add", help: "add a pool member",
		flags: func(fs *flag.FlagSet, v *adminVals) { v.member.register(fs) },
		check: func(v *adminVals) error { return v.member.check() }, do: poolAdd},
	{words: "pool list", help: "list pool members with their health", do: poolList},
	{words: "pool drain", args: "ID", nArgs: 1, help: "stop placing keys on a member and move its keys away", do: poolDrain},
	{words: "pool undrain", args: "ID", nArgs: 1, help: "place keys on a draining member again", do: poolUndrain},
	{words: "pool remove", args: "ID", nArgs: 1, help: "drain a member, then delete it (nothing changes if its keys cannot all move)", do: poolRemove},
	{words: "gateways list", help: "list registered gateways with their load", do: gatewaysList},
	{words: "console url", help: "print the operator console's sign-in URL (a secret derived from the admin key: open it in a browser, sign in with the key)", do: consoleURL},
}

// adminGroup returns the subcommands of a command group ("tokens"), nil if
// there is no such group.
func adminGroup(name string) []string {
	var subs []string
	for _, c := range adminCmds {
		if g, sub, _ := strings.Cut(c.words, " "); g == name {
			subs = append(subs, sub)
		}
	}
	return subs
}

func isHelpArg(a string) bool { return a == "-h" || a == "-help" || a == "--help" || a == "help" }

// groupUsage lists one group's commands (httvps admin tokens -h).
func groupUsage(w io.Writer, name string) {
	fmt.Fprintf(w, "Usage: httvps admin %s <command> [flags] [args]\n\nCommands:\n", name)
	for _, c := range adminCmds {
		if strings.HasPrefix(c.words, name+" ") {
			fmt.Fprintf(w, "  %-22s %s\n", strings.TrimSpace(c.words+" "+c.args), c.help)
		}
	}
	fmt.Fprintf(w, "\n`httvps admin %s COMMAND -h` shows a command's flags; `httvps admin -h` the common ones.\n", name)
}

func adminUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, "Usage: httvps admin [flags] <command> [flags] [args]\n\nCommands:\n")
	for _, c := range adminCmds {
		fmt.Fprintf(w, "  %-22s %s\n", strings.TrimSpace(c.words+" "+c.args), c.help)
	}
	fmt.Fprint(w, "\nFlags (before or after the command):\n")
	fs.PrintDefaults()
	fmt.Fprint(w, "\nAPI errors print \"error: <code>: <message>\" and exit 1; usage errors exit 2.\n")
}

// controlTLS is the TLS configuration for the control plane at control:
// the CA of -cacert (or its variable), else, for https, the data
// directory's CA when it exists (or the certificate of an older up).
func controlTLS(cacert string, insecure bool, dataDir, control string, e env) (*tls.Config, error) {
	cacert = firstNonEmpty(cacert, e.getenv(cliconf.EnvName("cacert")))
	if cacert == "" && !insecure && strings.HasPrefix(control, "https://") {
		for _, name := range []string{caCertName, legacyCertName} {
			if def := filepath.Join(dataDir, name); fileExists(def) {
				cacert = def
				break
			}
		}
	}
	tlsConf, err := tlsForCA(cacert, insecure)
	if err != nil {
		return nil, fmt.Errorf("-cacert: %w", err)
	}
	return tlsConf, nil
}

func runAdmin(ctx context.Context, args []string, e env) int {
	opts := &adminOpts{}
	fs := flag.NewFlagSet("httvps admin", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	opts.register(fs)
	// A flag error prints the flag package's one line and a hint, not the
	// whole usage around it; -h prints the usage.
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			adminUsage(e.stderr, fs)
			return exitOK
		}
		fmt.Fprintln(e.stderr, "Run `httvps admin -h` for the commands and flags.")
		return exitUsage
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprintln(e.stderr, "httvps admin: give a command, e.g. `httvps admin tokens list` (`httvps admin -h` lists them)")
		return exitUsage
	}
	group := adminGroup(rest[0])
	if group == nil {
		fmt.Fprintf(e.stderr, "httvps admin: unknown command %q; the commands are tokens, pool, gateways, fleet and console (`httvps admin -h`)\n", rest[0])
		return exitUsage
	}
	if len(rest) == 1 || isHelpArg(rest[1]) {
		if len(rest) == 1 {
			fmt.Fprintf(e.stderr, "httvps admin %s: give one of: %s\n", rest[0], strings.Join(group, ", "))
			return exitUsage
		}
		groupUsage(e.stderr, rest[0])
		return exitOK
	}
	var cmd *adminCmd
	for i := range adminCmds {
		if adminCmds[i].words == rest[0]+" "+rest[1] {
			cmd = &adminCmds[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(e.stderr, "httvps admin: unknown command %q; %s commands: %s\n", rest[0]+" "+rest[1], rest[0], strings.Join(group, ", "))
		return exitUsage
	}

	vals := &adminVals{}
	cfs := flag.NewFlagSet("httvps admin "+cmd.words, flag.ContinueOnError)
	cfs.SetOutput(e.stderr)
	if cmd.flags != nil {
		cmd.flags(cfs, vals)
	}
	opts.register(cfs)
	cfs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: httvps admin %s [flags] %s\n\n%s\n\nFlags:\n", cmd.words, cmd.args, cmd.help)
		// A fresh set, so defaults show as documented rather than as
		// the values parsed so far.
		show := flag.NewFlagSet("", flag.ContinueOnError)
		show.SetOutput(e.stderr)
		if cmd.flags != nil {
			cmd.flags(show, &adminVals{})
		}
		(&adminOpts{}).register(show)
		show.PrintDefaults()
	}
	usage := cfs.Usage
	cfs.Usage = func() {} // as above: one line and a hint on a flag error
	hint := func() { fmt.Fprintf(e.stderr, "Run `httvps admin %s -h` for its flags.\n", cmd.words) }
	pos, err := parseInterspersed(cfs, rest[2:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage()
			return exitOK
		}
		hint()
		return exitUsage
	}
	if len(pos) != cmd.nArgs {
		if cmd.nArgs == 0 {
			fmt.Fprintf(e.stderr, "httvps admin %s: unexpected argument %q\n", cmd.words, pos[0])
		} else {
			fmt.Fprintf(e.stderr, "httvps admin %s: give exactly %s\n", cmd.words, cmd.args)
		}
		hint()
		return exitUsage
	}
	if cmd.check != nil {
		if err := cmd.check(vals); err != nil {
			fmt.Fprintf(e.stderr, "httvps admin %s: %v\n", cmd.words, err)
			hint()
			return exitUsage
		}
	}
	c, err := opts.client(e)
	if err != nil {
		fmt.Fprintf(e.stderr, "httvps admin: %v\n", err)
		return exitUsage
	}
	defer c.close()
	a := &adminRun{ctx: ctx, e: e, opts: opts, vals: vals, args: pos, c: c}
	if err := cmd.do(a); err != nil {
		// API error messages are the control plane's text: escaped as
		// table cells are.
		fmt.Fprintf(e.stderr, "error: %s\n", printable(err.Error()))
		return exitFail
	}
	return exitOK
}

// parseInterspersed parses flags that may come after positional
// arguments ("tokens show ID --json") and returns the positional ones. An
// argument that starts with "-" but names no flag is positional: IDs are
// URL-safe base64 and may start with "-" ("tokens revoke -VBnG0X…"); "--"
// also ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(pos, args[i+1:]...), nil
		case len(a) > 1 && a[0] == '-' && namesFlag(fs, a):
			// One flag at a time (with its value), so a "-…" ID after it
			// is not taken for a flag by fs.Parse.
			one := []string{a}
			if !strings.Contains(a, "=") && !isBoolFlag(fs, a) && i+1 < len(args) {
				i++
				one = append(one, args[i])
			}
			if err := fs.Parse(one); err != nil {
				return nil, err
			}
		default:
			pos = append(pos, a)
		}
	}
	return pos, nil
}

// isBoolFlag reports whether arg names a boolean flag of fs (one that takes
// no separate value).
func isBoolFlag(fs *flag.FlagSet, arg string) bool {
	f := fs.Lookup(strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-"))
	if f == nil {
		return true // -h, -help
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// namesFlag reports whether arg ("-name", "--name" or "-name=value") is a
// flag of fs, or the -h / -help that flag.Parse answers itself.
func namesFlag(fs *flag.FlagSet, arg string) bool {
	name := strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-")
	if i := strings.IndexByte(name, '='); i >= 0 {
		name = name[:i]
	}
	return name == "h" || name == "help" || name != "" && fs.Lookup(name) != nil
}

// client resolves the connection settings: flag, then environment, then
// the files of a local `httvps up` data directory.
func (o *adminOpts) client(e env) (*apiClient, error) {
	dataDir := firstNonEmpty(o.dataDir, e.getenv(cliconf.EnvName("data-dir")), defaultDataDir(e))
	control := firstNonEmpty(o.control, e.getenv(cliconf.EnvName("control")), defaultControlURL)
	key := firstNonEmpty(o.adminKey, e.getenv(cliconf.EnvName("admin-key")))
	if key == "" {
		file := firstNonEmpty(o.adminKeyFile, e.getenv(cliconf.EnvName("admin-key-file")))
		if file == "" {
			if def := filepath.Join(dataDir, adminKeyName); fileExists(def) {
				file = def
			}
		}
		if file == "" {
			return nil, fmt.Errorf("no admin key: give -admin-key-file, %s or -data-dir of a local `httvps up`", cliconf.EnvName("admin-key"))
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("admin key: %w", err)
		}
		key = strings.TrimSpace(string(b))
		if key == "" {
			return nil, fmt.Errorf("admin key file %s is empty", file)
		}
	}
	tlsConf, err := controlTLS(o.cacert, o.insecure, dataDir, control, e)
	if err != nil {
		return nil, err
	}
	return newAPIClient(control, key, tlsConf, "")
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

func fileExists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}

// printJSON prints an answer as indented JSON. JSON strings may hold DEL
// and C1 characters raw (encoding/json escapes only C0); they are written
// as \u escapes, the same JSON, so no control character from the API
// reaches the terminal. An answer that is not JSON is not printed.
func (a *adminRun) printJSON(raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
		return fmt.Errorf("the answer is not JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := a.e.stdout.Write(escapeJSONControls(buf.Bytes()))
	return err
}

// escapeJSONControls rewrites DEL and C1 characters of valid JSON as \u
// escapes, and bytes that are not UTF-8 as \ufffd (what a JSON decoder
// reads them as). Outside strings JSON has only ASCII, and C0 is always
// escaped inside them, so every such rune is inside a string.
func escapeJSONControls(js []byte) []byte {
	if !bytes.ContainsFunc(js, jsonControl) {
		return js
	}
	out := make([]byte, 0, len(js)+16)
	for i := 0; i < len(js); {
		r, size := utf8.DecodeRune(js[i:])
		if jsonControl(r) {
			out = fmt.Appendf(out, `\u%04x`, r)
		} else {
			out = append(out, js[i:i+size]...)
		}
		i += size
	}
	return out
}

// jsonControl: DEL, C1, or (as utf8.RuneError) a byte that is not UTF-8;
// a real U+FFFD is rewritten as its own escape, which changes nothing.
func jsonControl(r rune) bool { return r == 0x7f || r >= 0x80 && r <= 0x9f || r == utf8.RuneError }

func (a *adminRun) timeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(a.ctx, d)
}

// request makes one API call within d and prints its answer: as indented
// JSON with --json, otherwise through show with the decoded value.
func request[T any](a *adminRun, d time.Duration, method, path string, query url.Values, in any, show func(T)) error {
	ctx, cancel := a.timeout(d)
	defer cancel()
	var v T
	raw, err := a.c.getJSON(ctx, method, path, query, in, &v)
	if err != nil {
		return err
	}
	if a.opts.json {
		return a.printJSON(raw)
	}
	show(v)
	return nil
}

// remove makes one DELETE call within d; the answer is {"id": …, field:
// true} with --json, otherwise done.
func remove(a *adminRun, d time.Duration, path, field, done string) error {
	ctx, cancel := a.timeout(d)
	defer cancel()
	if _, err := a.c.call(ctx, http.MethodDelete, path, nil, nil); err != nil {
		return err
	}
	if a.opts.json {
		return a.printJSON([]byte(`{"id":` + strconv.Quote(a.args[0]) + `,"` + field + `":true}`))
	}
	fmt.Fprintln(a.e.stdout, done)
	return nil
}

func tokensCreate(a *adminRun) error {
	v := a.vals
	req := map[string]any{}
	if v.label != "" {
		req["label"] = v.label
	}
	if v.ttl != "" {
		req["ttl"] = v.ttl // normalised by checkTokenFlags
	}
	if v.expiresAt != "" {
		req["expires_at"] = v.expiresAt
	}
	if v.quota > 0 {
		req["quota_bytes"] = int64(v.quota)
	}
	if v.maxSessions != 0 {
		req["max_sessions"] = v.maxSessions
	}
	if v.maxDevices != 0 {
		req["max_devices"] = v.maxDevices
	}
	if v.cipher != "" {
		req["cipher"] = v.cipher
	}
	if v.period != "" {
		req["quota_period"] = v.period
	}
	if v.anchor != "" {
		req["quota_anchor"] = v.anchor
	}
	return request(a, requestTimeout, http.MethodPost, "/v1/tokens", nil, req, func(t tokenJSON) {
		printSecret(a.e.stdout, "Token created. The token and its keys are shown only now; keep them.", t)
	})
}

// printSecret prints a token with its secret and keys (create, rotate).
func printSecret(w io.Writer, title string, t tokenJSON) {
	fmt.Fprintln(w, title)
	kv := newTable(w, "FIELD", "VALUE")
	tokenFields(kv, t)
	kv.row("token", t.Token)
	if t.AccessKeys != nil {
		kv.row("ssconf", t.AccessKeys.SSConf)
		kv.row("ss", t.AccessKeys.SS)
		kv.row("httvps", t.AccessKeys.HTTVPS)
	}
	kv.flush()
	if t.AccessKeys != nil {
		keyLegend(w, t.AccessKeys.SS != "")
	}
}

// tokenFields writes a token's fields as rows of a two-column table.
func tokenFields(kv *table, t tokenJSON) {
	kv.row("id", t.ID)
	kv.row("label", t.Label)
	kv.row("status", t.Status)
	kv.row("cipher", t.Cipher)
	kv.row("created", humanTime(&t.CreatedAt))
	kv.row("expires", orNever(t.ExpiresAt))
	if t.RevokedAt != nil {
		kv.row("revoked", humanTime(t.RevokedAt))
	}
	kv.row("quota", limitOrUnlimited(t.QuotaBytes, humanBytes))
	if t.QuotaPeriod != "" && t.QuotaPeriod != "none" {
		p := t.QuotaPeriod
		if t.QuotaAnchor == "created" {
			p += " (from the creation date)"
		}
		if t.Period != nil {
			p += ", now " + humanTime(&t.Period.Start) + " to " + humanTime(&t.Period.End)
		}
		kv.row("period", p)
	}
	if t.Usage != nil {
		kv.row("used", fmt.Sprintf("%s (up %s, down %s)", humanBytes(t.Usage.Total), humanBytes(t.Usage.Up), humanBytes(t.Usage.Down)))
	}
	for _, p := range t.PastPeriods {
		if p.Usage != nil {
			kv.row("used "+p.Start.UTC().Format(time.DateOnly), fmt.Sprintf("%s (up %s, down %s), until %s",
				humanBytes(p.Usage.Total), humanBytes(p.Usage.Up), humanBytes(p.Usage.Down), p.End.UTC().Format(time.DateOnly)))
		}
	}
	sessions := limitOrUnlimited(t.MaxSessions, strconv.Itoa)
	if t.Sessions != nil {
		sessions = fmt.Sprintf("%d of %s", *t.Sessions, sessions)
	}
	kv.row("sessions", sessions)
	devices := limitOrUnlimited(t.MaxDevices, strconv.Itoa)
	if t.Sessions != nil {
		devices = fmt.Sprintf("%d of %s", len(t.Devices), devices)
	}
	kv.row("devices", devices)
	var ms []string
	for _, as := range t.Assignments {
		ms = append(ms, as.MemberID+" ("+as.Upstream+")")
	}
	kv.row("members", strings.Join(ms, ", "))
}

func orNever(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return humanTime(t)
}

func tokensList(a *adminRun) error {
	q := url.Values{}
	if a.vals.limit != 0 {
		q.Set("limit", strconv.Itoa(a.vals.limit))
	}
	if a.vals.cursor != "" {
		q.Set("cursor", a.vals.cursor)
	}
	return request(a, requestTimeout, http.MethodGet, "/v1/tokens", q, nil, func(l tokenListJSON) {
		tb := newTable(a.e.stdout, "ID", "LABEL", "STATUS", "CIPHER", "USED", "QUOTA", "MAX-SESSIONS", "MAX-DEVICES", "EXPIRES", "CREATED")
		for _, t := range l.Tokens {
			used := "-"
			if t.Usage != nil {
				used = humanBytes(t.Usage.Total)
			}
			tb.row(t.ID, t.Label, t.Status, t.Cipher, used,
				limitOrUnlimited(t.QuotaBytes, humanBytes), limitOrUnlimited(t.MaxSessions, strconv.Itoa),
				limitOrUnlimited(t.MaxDevices, strconv.Itoa), orNever(t.ExpiresAt), humanTime(&t.CreatedAt))
		}
		tb.flush()
		if l.NextCursor != "" {
			fmt.Fprintf(a.e.stdout, "more: --cursor %s\n", printable(l.NextCursor))
		}
	})
}

func tokensShow(a *adminRun) error {
	return request(a, requestTimeout, http.MethodGet, "/v1/tokens/"+url.PathEscape(a.args[0]), nil, nil, func(t tokenJSON) {
		kv := newTable(a.e.stdout, "FIELD", "VALUE")
		tokenFields(kv, t)
		kv.flush()
		if len(t.Devices) > 0 {
			fmt.Fprintln(a.e.stdout)
			printDevices(a.e.stdout, t.Devices, time.Now())
		}
	})
}

func tokensRevoke(a *adminRun) error {
	return remove(a, requestTimeout, "/v1/tokens/"+url.PathEscape(a.args[0]), "revoked",
		"token "+a.args[0]+" revoked; its sessions are being closed on every gateway")
}

func poolAdd(a *adminRun) error {
	return request(a, requestTimeout, http.MethodPost, "/v1/pool/members", nil, a.vals.member.request(), func(m memberJSON) {
		printMembers(a.e.stdout, []memberJSON{m})
	})
}

func printMembers(w io.Writer, ms []memberJSON) {
	now := time.Now()
	tb := newTable(w, "ID", "NAME", "BACKEND", "ENDPOINT", "STATE", "KEYS", "LOAD", "CHECKED", "ERROR")
	for _, m := range ms {
		checked := "-"
		if m.Health.CheckedAt != nil {
			checked = ago(*m.Health.CheckedAt, now)
		}
		tb.row(m.ID, m.Name, m.Backend, memberEndpoint(m), memberState(m), strconv.Itoa(m.Health.Keys),
			strconv.FormatFloat(m.Health.Load, 'f', -1, 64), checked, m.Health.LastError)
	}
	tb.flush()
}

func poolList(a *adminRun) error {
	return request(a, requestTimeout, http.MethodGet, "/v1/pool/members", nil, nil, func(l memberListJSON) {
		printMembers(a.e.stdout, l.Members)
	})
}

func poolDrain(a *adminRun) error   { return memberAction(a, longRequestTimeout, "drain") }
func poolUndrain(a *adminRun) error { return memberAction(a, requestTimeout, "undrain") }

// memberAction POSTs /v1/pool/members/ID/action and prints the member.
func memberAction(a *adminRun, timeout time.Duration, action string) error {
	return request(a, timeout, http.MethodPost, "/v1/pool/members/"+url.PathEscape(a.args[0])+"/"+action, nil, nil, func(m memberJSON) {
		printMembers(a.e.stdout, []memberJSON{m})
	})
}

func poolRemove(a *adminRun) error {
	return remove(a, longRequestTimeout, "/v1/pool/members/"+url.PathEscape(a.args[0]), "removed",
		"member "+a.args[0]+" drained and removed")
}

// consoleURL prints the console's sign-in page: the path is derived from
// the admin key (control/console.SignInPath), so no request is needed.
func consoleURL(a *adminRun) error {
	u := *a.c.base
	u.Path = console.SignInPath(a.c.key)
	fmt.Fprintln(a.e.stdout, u.String())
	return nil
}

func gatewaysList(a *adminRun) error {
	return request(a, requestTimeout, http.MethodGet, "/v1/gateways", nil, nil, func(l gatewayListJSON) {
		now := time.Now()
		tb := newTable(a.e.stdout, "ID", "PUBLIC-URL", "LIVE", "SESSIONS", "STARTED", "HEARTBEAT", "VERSION")
		for _, g := range l.Gateways {
			live := "no"
			if g.Live {
				live = "yes"
			}
			tb.row(g.ID, g.PublicURL, live, strconv.Itoa(g.Sessions), humanTime(&g.Started), ago(g.LastHeartbeat, now), cmp.Or(g.Version, "-"))
		}
		tb.flush()
	})
}

// checkTokenFlags validates tokens create's flags before the request: a
// -ttl of whole days ("30d") becomes hours, anything else must be a
// positive Go duration.
func checkTokenFlags(v *adminVals) error {
	if v.ttl == "" {
		return nil
	}
	d, err := parseTTL(v.ttl)
	if err != nil {
		return err
	}
	v.ttl = d.String()
	return nil
}

// parseTTL reads 30d (days), or a Go duration like 720h or 90m.
func parseTTL(s string) (time.Duration, error) {
	bad := fmt.Errorf("-ttl %q is not a duration like 30d, 720h or 90m", s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 || days > 100*365 {
			return 0, bad
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, bad
	}
	return d, nil
}
