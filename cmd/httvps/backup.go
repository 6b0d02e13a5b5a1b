package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/httvps/httvps/internal/cliconf"
	"github.com/httvps/httvps/store/embedded"
)

// backupTimeout bounds one backup download; the store file of a single
// node is megabytes, rarely more.
const backupTimeout = 10 * time.Minute

// runBackup is `httvps backup [flags] FILE`: the running node's store
// through its admin API (GET /v1/backup), which is the one process that
// may open the bbolt file while it runs; or, with -offline, the file of a
// stopped node. The copy is checked (bbolt's consistency check, the
// store's buckets) before it is renamed to FILE.
func runBackup(ctx context.Context, args []string, e env) int {
	opts := &adminOpts{}
	flags := flag.NewFlagSet("httvps backup", flag.ContinueOnError)
	flags.SetOutput(e.stderr)
	opts.register(flags)
	offline := flags.Bool("offline", false, "copy DATA-DIR/"+storeName+" of a stopped `httvps up` directly, without the API")
	force := flags.Bool("force", false, "replace FILE if it exists")
	flags.Usage = func() {
		fmt.Fprint(e.stderr, "Usage: httvps backup [flags] FILE\n\n"+
			"Writes a consistent copy of a running `httvps up`'s embedded store (tokens,\n"+
			"usage, pool members, ACME certificates) to FILE (mode 0600), taken through its\n"+
			"admin API while it serves. Restore it with `httvps restore FILE`. The data\n"+
			"directory's admin.key, ca.pem and ca-key.pem are not in it: keep a copy of them.\n\nFlags:\n")
		flags.PrintDefaults()
	}
	file, code, ok := oneFile(flags, args, e)
	if !ok {
		return code
	}
	if !*force && fileExists(file) {
		fmt.Fprintf(e.stderr, "httvps backup: %s exists; give another name, or -force to replace it\n", file)
		return exitUsage
	}
	write := func(w io.Writer) (int64, error) {
		dataDir := firstNonEmpty(opts.dataDir, e.getenv(cliconf.EnvName("data-dir")), defaultDataDir(e))
		n, err := embedded.SnapshotFile(filepath.Join(dataDir, storeName), w)
		if err != nil {
			err = fmt.Errorf("%w (is `httvps up` running? then back up without -offline, through its API)", err)
		}
		return n, err
	}
	if !*offline {
		c, err := opts.client(e)
		if err != nil {
			fmt.Fprintf(e.stderr, "httvps backup: %v\n", err)
			return exitUsage
		}
		defer c.close()
		write = func(w io.Writer) (int64, error) {
			rctx, cancel := context.WithTimeout(ctx, backupTimeout)
			defer cancel()
			return c.download(rctx, "/v1/backup", w)
		}
	}
	sum, n, err := writeChecked(file, write)
	if err != nil {
		fmt.Fprintf(e.stderr, "httvps backup: %s\n", printable(err.Error()))
		return exitFail
	}
	fmt.Fprintf(e.stdout, "%s: %d bytes; %d tokens, %d with usage, %d pool members; installation %s\n",
		file, n, sum.Tokens, sum.Usage, sum.Members, sum.InstallationID)
	return exitOK
}

// writeChecked writes what write produces to a temporary file beside
// name (mode 0600), checks it is a whole store file and renames it to
// name, so name is either the old file or a good copy.
func writeChecked(name string, write func(io.Writer) (int64, error)) (embedded.Summary, int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return embedded.Summary{}, 0, err
	}
	defer os.Remove(tmp.Name())
	n, err := write(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return embedded.Summary{}, n, err
	}
	sum, err := embedded.Inspect(tmp.Name())
	if err != nil {
		return sum, n, fmt.Errorf("the copy does not check out, %s is left as it was: %w", name, err)
	}
	return sum, n, os.Rename(tmp.Name(), name)
}

// runRestore is `httvps restore [flags] FILE`: FILE (from `httvps backup`)
// becomes DATA-DIR/httvps.db. A data directory that already holds a store
// is refused unless -force, and always while a process holds that store.
func runRestore(_ context.Context, args []string, e env) int {
	flags := flag.NewFlagSet("httvps restore", flag.ContinueOnError)
	flags.SetOutput(e.stderr)
	dataDir := flags.String("data-dir", "", "`directory` of the `httvps up` to restore into; created when absent ["+cliconf.EnvName("data-dir")+"] (default "+defaultDataDir(e)+")")
	force := flags.Bool("force", false, "replace the store of a stopped `httvps up` (the old one is kept as "+storeName+".pre-restore)")
	flags.Usage = func() {
		fmt.Fprint(e.stderr, "Usage: httvps restore [flags] FILE\n\n"+
			"Checks FILE (from `httvps backup`) and makes it the store of -data-dir, for an\n"+
			"`httvps up -data-dir` to start on. Stop that node first; a fresh directory is best.\n"+
			"Copy the old data directory's admin.key, ca.pem and ca-key.pem into it to keep the\n"+
			"same admin key and the CA that httvps:// keys pin.\n\nFlags:\n")
		flags.PrintDefaults()
	}
	file, code, ok := oneFile(flags, args, e)
	if !ok {
		return code
	}
	dir := firstNonEmpty(*dataDir, e.getenv(cliconf.EnvName("data-dir")), defaultDataDir(e))
	sum, err := embedded.Inspect(file)
	if err != nil {
		fmt.Fprintf(e.stderr, "httvps restore: %s is not a good backup: %v\n", file, err)
		return exitFail
	}
	dst := filepath.Join(dir, storeName)
	if _, err := os.Stat(dst); err == nil {
		// Inspect waits for the lock that a running node holds.
		if _, err := embedded.Inspect(dst); err != nil && !errors.Is(err, embedded.ErrNotStore) {
			fmt.Fprintf(e.stderr, "httvps restore: %s is in use: stop that `httvps up` first (%v)\n", dst, err)
			return exitFail
		}
		if !*force {
			fmt.Fprintf(e.stderr, "httvps restore: %s already holds a store; restore into a fresh -data-dir, or stop its `httvps up` and give -force\n", dst)
			return exitUsage
		}
		if err := os.Rename(dst, dst+".pre-restore"); err != nil {
			fmt.Fprintf(e.stderr, "httvps restore: %v\n", err)
			return exitFail
		}
		fmt.Fprintf(e.stdout, "the old store is kept as %s.pre-restore\n", dst)
	} else if !errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(e.stderr, "httvps restore: %v\n", err)
		return exitFail
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fmt.Fprintf(e.stderr, "httvps restore: data directory: %v\n", err)
		return exitFail
	}
	src, err := os.Open(file)
	if err != nil {
		fmt.Fprintf(e.stderr, "httvps restore: %v\n", err)
		return exitFail
	}
	defer src.Close()
	if _, _, err := writeChecked(dst, func(w io.Writer) (int64, error) { return io.Copy(w, src) }); err != nil {
		fmt.Fprintf(e.stderr, "httvps restore: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(e.stdout, "restored %s into %s: %d tokens, %d with usage, %d pool members; installation %s\n",
		file, dir, sum.Tokens, sum.Usage, sum.Members, sum.InstallationID)
	if !fileExists(filepath.Join(dir, adminKeyName)) {
		fmt.Fprintf(e.stdout, "%s has no %s: `httvps up` will create a new admin key (copy the old one there first to keep it)\n", dir, adminKeyName)
	}
	fmt.Fprintf(e.stdout, "start it with: httvps up -data-dir %s\n", shellQuote(dir))
	return exitOK
}

// oneFile parses the flags of `httvps backup|restore` and their one FILE;
// !ok means the command ends with code (help asked, or a usage error, said).
func oneFile(flags *flag.FlagSet, args []string, e env) (file string, code int, ok bool) {
	pos, err := parseInterspersed(flags, args)
	if errors.Is(err, flag.ErrHelp) {
		return "", exitOK, false
	}
	if err != nil {
		return "", exitUsage, false
	}
	if len(pos) != 1 {
		fmt.Fprintf(e.stderr, "%s: give exactly one FILE (`%s -h`)\n", flags.Name(), flags.Name())
		return "", exitUsage, false
	}
	return pos[0], 0, true
}
