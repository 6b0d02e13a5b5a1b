package client

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
)

// DeviceHeader is the upgrade request header that carries a native
// client's device id (docs/03, "Device id").
const DeviceHeader = "HTTVPS-Device"

// ErrDeviceID reports a device id the gateways would refuse.
var ErrDeviceID = errors.New("client: device id must be 16 to 64 characters of A-Z a-z 0-9 _ -")

// NewDeviceID returns a random device id: 128 bits, 22 base64url
// characters. Make it once per installation and keep it.
func NewDeviceID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// CheckDeviceID reports whether id is a device id gateways accept (the
// same rule as the gateway's, which refuses anything else as a probe).
func CheckDeviceID(id string) error {
	if len(id) < 16 || len(id) > 64 {
		return ErrDeviceID
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return ErrDeviceID
		}
	}
	return nil
}
