package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/client"
	"github.com/httvps/httvps/control/api/wire"
)

// tokens show prints each live device with its gateways: sessions held
// there, or the grace left once they ended.
func TestPrintDevices(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	grace := now.Add(90 * time.Second)
	var b strings.Builder
	printDevices(&b, []wire.DeviceView{
		{Device: "127.0.0.2", Kind: wire.DeviceAddress, FirstSeen: now.Add(-time.Hour), LastSeen: now.Add(-5 * time.Second), Sessions: 20,
			Gateways: []wire.DeviceLeaseView{{GatewayID: "gw-a", Sessions: 12}, {GatewayID: "gw-b", Sessions: 8}}},
		{Device: "Native_device-0123456789", Kind: wire.DeviceID, FirstSeen: now.Add(-time.Minute), LastSeen: now.Add(-30 * time.Second),
			Gateways: []wire.DeviceLeaseView{{GatewayID: "gw-b", GraceUntil: &grace}}},
	}, now)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "DEVICE KIND SESSIONS FIRST-SEEN LAST-SEEN GATEWAYS" {
		t.Fatalf("table:\n%s", b.String())
	}
	if got := strings.Join(strings.Fields(lines[1]), " "); got != "127.0.0.2 address 20 2026-12-04 11:00:00 5s ago gw-a (12), gw-b (8)" {
		t.Errorf("address row %q", got)
	}
	if got := strings.Join(strings.Fields(lines[2]), " "); got != "Native_device-0123456789 device_id 0 2026-12-04 11:59:00 30s ago gw-b (grace 1m30s)" {
		t.Errorf("device id row %q", got)
	}
}

// The device id is made once and kept: the same on every start, in a
// 0600 file; a damaged file is an error rather than a new device.
func TestDeviceIDKept(t *testing.T) {
	dir := t.TempDir()
	e := env{lookupEnv: func(k string) (string, bool) {
		if k == "XDG_STATE_HOME" {
			return dir, true
		}
		return "", false
	}}
	d := clientDataDir("", e)
	if d != filepath.Join(dir, "httvps") {
		t.Fatalf("data dir %q", d)
	}
	file := filepath.Join(d, deviceIDName)
	id, err := loadOrCreateDeviceID(file)
	if err != nil || client.CheckDeviceID(id) != nil {
		t.Fatalf("new id %q: %v", id, err)
	}
	again, err := loadOrCreateDeviceID(file)
	if err != nil || again != id {
		t.Fatalf("second start: %q %v, want %q", again, err, id)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("device id file: %v %v", fi, err)
	}
	os.WriteFile(file, []byte("not a device id!\n"), 0o600)
	if _, err := loadOrCreateDeviceID(file); !errors.Is(err, client.ErrDeviceID) {
		t.Fatalf("damaged file: %v", err)
	}
	if d := clientDataDir("", env{lookupEnv: noEnv}); d != "" {
		t.Fatalf("no environment: data dir %q, want none", d)
	}
}
