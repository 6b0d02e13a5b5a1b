package gateway

import (
	"net"
	"net/netip"
)

// DeviceHeader carries a native client's device id on the tunnel's upgrade
// request (docs/03): random per installation, so the tunnels of one client
// count as one device whatever its address.
const DeviceHeader = "HTTVPS-Device"

// Bounds of a device id: 16 to 64 bytes of the base64url alphabet
// (a 128-bit random id is 22). Anything else is a probe and gets the decoy.
const (
	MinDeviceID = 16
	MaxDeviceID = 64
)

// ValidDeviceID reports whether id is a device id the gateway accepts.
func ValidDeviceID(id []byte) bool {
	if len(id) < MinDeviceID || len(id) > MaxDeviceID {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// onDevice takes the HTTVPS-Device header; value is only valid during the
// call, so it is copied. A second header or an invalid value refuses the
// request (beforeUpgrade).
func (h *handshake) onDevice(value []byte) {
	if h.devLen > 0 || h.devBad || !ValidDeviceID(value) {
		h.devBad = true
		h.devLen = 0
		return
	}
	h.devLen = copy(h.device[:], value)
}

// addrOf is the client address a for Client.Addr, without allocating.
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}
