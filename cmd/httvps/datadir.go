package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/httvps/httvps/client"
	"github.com/httvps/httvps/internal/cliconf"
)

const adminKeyBytes = 32 // 43 base64url characters

// writeFileAtomic writes data to name with mode perm through a temporary
// file, so a crash never leaves half a key behind.
func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

// loadOrCreateAdminKey reads the admin key from file, or creates the file
// (0600) with a random key. created says the key is new.
func loadOrCreateAdminKey(file string) (key string, created bool, err error) {
	b, err := os.ReadFile(file)
	switch {
	case err == nil:
		key = strings.TrimSpace(string(b))
		if len(key) < 32 {
			return "", false, fmt.Errorf("admin key in %s is shorter than 32 characters", file)
		}
		if fi, err := os.Stat(file); err == nil && fi.Mode().Perm()&0o077 != 0 {
			return "", false, fmt.Errorf("admin key file %s is readable by others (mode %v); chmod 600 it", file, fi.Mode().Perm())
		}
		return key, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", false, err
	}
	raw := make([]byte, adminKeyBytes)
	rand.Read(raw) // never fails (crypto/rand panics instead)
	key = base64.RawURLEncoding.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return "", false, err
	}
	if err := writeFileAtomic(file, []byte(key+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("writing the admin key: %w", err)
	}
	return key, true, nil
}

// certNames are the names the generated leaf covers: the public host and
// loopback, so local clients and `up` itself can verify it.
func certNames(publicHost string) (dns []string, ips []net.IP) {
	dns = []string{"localhost"}
	ips = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if ip := net.ParseIP(publicHost); ip != nil {
		if !ip.IsLoopback() {
			ips = append(ips, ip)
		}
	} else if publicHost != "localhost" {
		dns = append(dns, publicHost)
	}
	return dns, ips
}

// deviceIDName is the file in the data directory holding this
// installation's device id for the native tunnel (docs/03).
const deviceIDName = "device-id"

// loadOrCreateDeviceID reads the device id from file, or creates the file
// (0600, its directory 0700) with a new random one, so every start of this
// installation is the same device to the gateways.
func loadOrCreateDeviceID(file string) (string, error) {
	b, err := os.ReadFile(file)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(b))
		if err := client.CheckDeviceID(id); err != nil {
			return "", fmt.Errorf("%s: %w", file, err)
		}
		return id, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", err
	}
	id := client.NewDeviceID()
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return "", err
	}
	if err := writeFileAtomic(file, []byte(id+"\n"), 0o600); err != nil {
		return "", err
	}
	return id, nil
}

// clientDataDir is where `httvps connect` keeps its device id: -data-dir,
// HTTVPS_DATA_DIR, $XDG_STATE_HOME/httvps, else ~/.local/state/httvps;
// "" when none is known (no id is kept then).
func clientDataDir(flagValue string, e env) string {
	if d := firstNonEmpty(flagValue, e.getenv(cliconf.EnvName("data-dir"))); d != "" {
		return d
	}
	if x := e.getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "httvps")
	}
	if h := e.getenv("HOME"); h != "" {
		return filepath.Join(h, ".local", "state", "httvps")
	}
	return ""
}
