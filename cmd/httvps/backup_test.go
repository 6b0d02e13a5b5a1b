package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
)

// cli runs an httvps command in-process and returns stdout, stderr, status.
func cli(args ...string) (string, string, int) {
	var out, errs bytes.Buffer
	code := run(context.Background(), args, env{stdout: &out, stderr: &errs, lookupEnv: noEnv})
	return out.String(), errs.String(), code
}

// showToken is `httvps admin tokens show ID --json`.
func showToken(t *testing.T, ctlURL, dir, id string) tokenJSON {
	t.Helper()
	var tj tokenJSON
	out := mustAdmin(t, ctlURL, dir, "tokens", "show", id, "--json")
	if err := json.Unmarshal([]byte(out), &tj); err != nil || tj.Usage == nil {
		t.Fatalf("tokens show %s --json: %v\n%s", id, err, out)
	}
	return tj
}

// TestBackupRestore: a running `httvps up` with a relayed token (so with
// usage), a second token and its member is backed up through its API
// while it serves; the backup is restored into a fresh data directory, a
// second `httvps up` starts on it and has the tokens, the usage and the
// member, and the restored token relays through its gateway.
func TestBackupRestore(t *testing.T) {
	needPeers(t, "ss-server")
	const method, password = testpeer.DefaultMethod, "backup-test-pass"
	ss := testpeer.SSServer(t, password, method)
	origin := testpeer.StartOrigin(t)
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "data")
	gwAddr := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	ctlAddr := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	ctlURL := "https://" + ctlAddr
	startUp(t, "-data-dir", dir, "-listen", gwAddr, "-control-listen", ctlAddr,
		"-member", "static:"+ss+":"+method+":"+password, "-drain-timeout", "2s", "-log-level", "warn")
	keys := readSecretFile(t, filepath.Join(dir, "first-token.txt"))
	firstID, token := field(t, keys, "token id"), field(t, keys, "token")

	// Usage: a download through the gateway, flushed to the store within
	// the authenticator's flush interval.
	const n = 256 << 10
	fetchThrough(t, "wss://"+gwAddr, token, method, password, origin, n, certPool(t, filepath.Join(dir, "ca.pem")))
	var used tokenJSON
	for deadline := time.Now().Add(30 * time.Second); ; {
		if used = showToken(t, ctlURL, dir, firstID); used.Usage.Down >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage never reached the store: %+v", used.Usage)
		}
		time.Sleep(100 * time.Millisecond)
	}
	mustAdmin(t, ctlURL, dir, "tokens", "create", "-label", "second", "-quota", "1GiB")
	var list tokenListJSON
	if err := json.Unmarshal([]byte(mustAdmin(t, ctlURL, dir, "tokens", "list", "--json")), &list); err != nil || len(list.Tokens) != 2 {
		t.Fatalf("tokens list: %v %+v", err, list)
	}

	// Backup while it runs; the copy checks out.
	file := filepath.Join(tmp, "backup.db")
	out, errs, code := cli("backup", "-control", ctlURL, "-data-dir", dir, file)
	if code != 0 || !strings.Contains(out, "2 tokens") || !strings.Contains(out, "1 pool members") {
		t.Fatalf("httvps backup: exit %d\n%s%s", code, out, errs)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v", fi, err)
	}
	if _, errs, code := cli("backup", "-control", ctlURL, "-data-dir", dir, file); code != exitUsage || !strings.Contains(errs, "-force") {
		t.Errorf("backup onto an existing file: exit %d, %s", code, errs)
	}
	// Without the API, the running node's file is refused (bbolt's lock).
	if _, errs, code := cli("backup", "-offline", "-data-dir", dir, filepath.Join(tmp, "offline.db")); code != exitFail || !strings.Contains(errs, "without -offline") {
		t.Errorf("backup -offline of a running node: exit %d, %s", code, errs)
	}
	// Restore never writes into the running node's directory.
	for _, force := range []bool{false, true} {
		args := []string{"restore", "-data-dir", dir, file}
		if force {
			args = append(args[:1], append([]string{"-force"}, args[1:]...)...)
		}
		if _, errs, code := cli(args...); code == 0 || !strings.Contains(errs, "in use") {
			t.Errorf("restore %v into the running node: exit %d, %s", args, code, errs)
		}
	}
	if _, errs, code := cli("restore", "-data-dir", filepath.Join(tmp, "x"), filepath.Join(dir, "admin.key")); code != exitFail || !strings.Contains(errs, "not a good backup") {
		t.Errorf("restore of a file that is no store: exit %d, %s", code, errs)
	}

	// Restore into a fresh directory and start a second node on it (no
	// -member: the member comes from the store).
	dir2 := filepath.Join(tmp, "restored")
	out, errs, code = cli("restore", "-data-dir", dir2, file)
	if code != 0 || !strings.Contains(out, "2 tokens, 1 with usage, 1 pool members") {
		t.Fatalf("httvps restore: exit %d\n%s%s", code, out, errs)
	}
	if _, errs, code := cli("restore", "-data-dir", dir2, file); code != exitUsage || !strings.Contains(errs, "already holds a store") {
		t.Errorf("second restore without -force: exit %d, %s", code, errs)
	}
	gw2 := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	ctl2 := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	ctlURL2 := "https://" + ctl2
	u2 := startUp(t, "-data-dir", dir2, "-listen", gw2, "-control-listen", ctl2, "-drain-timeout", "2s", "-log-level", "warn")
	if out := u2.out.String(); !strings.Contains(out, "Tokens issued before are kept") {
		t.Errorf("restored node's banner:\n%s", out)
	}
	var list2 tokenListJSON
	if err := json.Unmarshal([]byte(mustAdmin(t, ctlURL2, dir2, "tokens", "list", "--json")), &list2); err != nil || len(list2.Tokens) != 2 {
		t.Fatalf("restored tokens list: %v %+v", err, list2)
	}
	for i := range list.Tokens {
		a, b := list.Tokens[i], list2.Tokens[i]
		if a.ID != b.ID || a.Label != b.Label || a.QuotaBytes != b.QuotaBytes || !a.CreatedAt.Equal(b.CreatedAt) {
			t.Errorf("token %d: before %+v, restored %+v", i, a, b)
		}
	}
	// Usage as backed up: at least what was seen before the backup, at
	// most what the first node has now (a last flush may land after).
	now := showToken(t, ctlURL, dir, firstID)
	if got := showToken(t, ctlURL2, dir2, firstID).Usage; got.Down < used.Usage.Down || got.Up < used.Usage.Up ||
		got.Down > now.Usage.Down || got.Up > now.Usage.Up || got.Total != got.Up+got.Down {
		t.Errorf("restored usage %+v; before the backup %+v, now %+v", *got, *used.Usage, *now.Usage)
	}
	var members memberListJSON
	if err := json.Unmarshal([]byte(mustAdmin(t, ctlURL2, dir2, "pool", "list", "--json")), &members); err != nil ||
		len(members.Members) != 1 || members.Members[0].Static == nil || members.Members[0].Host+":"+strconv.Itoa(members.Members[0].Static.Port) != ss {
		t.Fatalf("restored members: %v %+v", err, members)
	}
	// The restored token relays through the restored node's gateway (its
	// certificate is the new data directory's CA: no CA files were copied).
	fetchThrough(t, "wss://"+gw2, token, method, password, origin, 64<<10, certPool(t, filepath.Join(dir2, "ca.pem")))
}
