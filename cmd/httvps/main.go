// Command httvps is the HTTVPS all-in-one tool: `httvps up` runs a whole
// single-node installation (control plane, gateway, pool manager) on the
// embedded store, `httvps admin` drives a control plane's admin API,
// `httvps connect` is the reference client and `httvps key` prints a
// token's keys.
// It is the only place that reads flags, environment and files; see
// `httvps help` and docs/06-httvps-cli.md.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/httvps/httvps/internal/version"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran and failed (API error, serving failed)
	exitUsage = 2 // bad flags, arguments or configuration
)

// env is the process's outside world, injected so tests need no process
// state.
type env struct {
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
}

func (e env) getenv(name string) string {
	v, _ := e.lookupEnv(name)
	return v
}

func main() {
	// The first SIGTERM/SIGINT starts a graceful stop; once the context is
	// done the default action is back, so a second one ends the process.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], env{stdout: os.Stdout, stderr: os.Stderr, lookupEnv: os.LookupEnv})
	stop()
	os.Exit(code)
}

const usageText = `Usage: httvps <command> [flags]

Commands:
  up       run a single-node installation: control plane, gateway and pool
           on the embedded store (httvps up -h)
  admin    drive a control plane's admin API: tokens, pool, gateways
           (httvps admin -h)
  connect  run the client: a local SOCKS5 and HTTP proxy through the
           gateways of a key (httvps connect -h)
  key      print a token's ss://, ssconf:// and httvps:// keys with a QR
           code (httvps key -h)
  backup   copy a running httvps up's store to a file (httvps backup -h)
  restore  make a backup the store of a data directory (httvps restore -h)
  version  print the version, commit, build date and Go version
           (also -version)
  help     show this text

See docs/06-httvps-cli.md for every flag and examples.
`

// run returns the exit status.
func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usageText)
		return exitUsage
	}
	switch args[0] {
	case "up":
		return runUp(ctx, args[1:], e)
	case "admin":
		return runAdmin(ctx, args[1:], e)
	case "connect":
		return runConnect(ctx, args[1:], e)
	case "key":
		return runKey(ctx, args[1:], e)
	case "backup":
		return runBackup(ctx, args[1:], e)
	case "restore":
		return runRestore(ctx, args[1:], e)
	case "version", "-version", "--version":
		fmt.Fprintln(e.stdout, version.Get().String("httvps"))
		return exitOK
	}
	if isHelpArg(args[0]) {
		fmt.Fprint(e.stdout, usageText)
		return exitOK
	}
	fmt.Fprintf(e.stderr, "httvps: unknown command %q\n\n%s", args[0], usageText)
	return exitUsage
}
