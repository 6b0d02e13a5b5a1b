// Package wire holds the JSON bodies of the control plane API
// (docs/02-control-plane-api.md, docs/openapi.yaml): control/api encodes
// them and the `httvps admin` client decodes them, so both read one
// definition. It imports nothing but the standard library.
package wire

import "time"

// AccessKeys are the ways to hand a token to a client application.
// docs/02-control-plane-api.md ("Access keys") describes each format.
type AccessKeys struct {
	// SS is a SIP002 ss:// URL for ss-local + v2ray-plugin through the best
	// gateway; empty when no gateway is registered.
	SS string `json:"ss,omitempty"`
	// SSConf is the Outline dynamic access key.
	SSConf string `json:"ssconf"`
	// HTTVPS is the reference client's key.
	HTTVPS string `json:"httvps"`
}

// AssignmentView is one pool member a token's key is placed on.
type AssignmentView struct {
	MemberID string `json:"member_id"`
	Upstream string `json:"upstream"`
}

// UsageView is a token's relayed bytes (of its current quota period).
type UsageView struct {
	Up    int64 `json:"up"`
	Down  int64 `json:"down"`
	Total int64 `json:"total"`
}

// PeriodView is a quota period [Start, End) and, for an ended one, its
// usage.
type PeriodView struct {
	Start time.Time  `json:"start"`
	End   time.Time  `json:"end"`
	Usage *UsageView `json:"usage,omitempty"`
}

// BucketView is one hour or day of usage history.
type BucketView struct {
	Start time.Time `json:"start"`
	Up    int64     `json:"up"`
	Down  int64     `json:"down"`
	Total int64     `json:"total"`
}

// UsageHistory is the answer to GET /v1/tokens/{id}/usage (TokenID set)
// and GET /v1/usage (the fleet).
type UsageHistory struct {
	TokenID string       `json:"token_id,omitempty"`
	Step    string       `json:"step"`
	From    time.Time    `json:"from"`
	To      time.Time    `json:"to"`
	Total   UsageView    `json:"total"`
	Buckets []BucketView `json:"buckets"`
}

// TokenView is a token as the admin API shows it: never the token string,
// its hash or the Shadowsocks password.
type TokenView struct {
	ID          string     `json:"id"`
	Label       string     `json:"label"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at"`
	QuotaBytes  int64      `json:"quota_bytes"`
	QuotaPeriod string     `json:"quota_period"`
	QuotaAnchor string     `json:"quota_anchor"`
	// Period is the current quota period (absent for "none"); Usage
	// counts within it.
	Period      *PeriodView      `json:"period,omitempty"`
	MaxSessions int              `json:"max_sessions"`
	MaxDevices  int              `json:"max_devices"`
	Cipher      string           `json:"cipher"`
	Status      string           `json:"status"`
	RevokedAt   *time.Time       `json:"revoked_at,omitempty"`
	Assignments []AssignmentView `json:"assignments"`
	Usage       *UsageView       `json:"usage,omitempty"`
	// PastPeriods are ended quota periods, newest first (GET
	// /v1/tokens/{id} only).
	PastPeriods []PeriodView `json:"past_periods,omitempty"`
	Sessions    *int         `json:"sessions,omitempty"`
	// Devices are the token's live devices (GET /v1/tokens/{id} only).
	Devices []DeviceView `json:"devices,omitempty"`
}

// Device kinds in DeviceView.Kind.
const (
	DeviceAddress = "address"   // a client address (IPv6 by /64)
	DeviceID      = "device_id" // the device id a native client sent
)

// DeviceView is one live device of a token, as counted against
// max_devices across the fleet.
type DeviceView struct {
	Device    string            `json:"device"`
	Kind      string            `json:"kind"`
	FirstSeen time.Time         `json:"first_seen"`
	LastSeen  time.Time         `json:"last_seen"`
	Sessions  int               `json:"sessions"`
	Gateways  []DeviceLeaseView `json:"gateways"`
}

// DeviceLeaseView is one gateway's hold of a device: its sessions there
// (as last reported) or, once they ended, when the device stops counting.
type DeviceLeaseView struct {
	GatewayID  string     `json:"gateway_id"`
	Sessions   int        `json:"sessions"`
	GraceUntil *time.Time `json:"grace_until,omitempty"`
}

// CreatedToken is the answer to POST /v1/tokens: the only time the token
// string is ever shown.
type CreatedToken struct {
	TokenView
	Token      string     `json:"token"`
	AccessKeys AccessKeys `json:"access_keys"`
}

// TokenList is the answer to GET /v1/tokens.
type TokenList struct {
	Tokens     []TokenView `json:"tokens"`
	NextCursor string      `json:"next_cursor"`
}

// OutlineConfig is an Outline member's Management API.
type OutlineConfig struct {
	APIURL     string `json:"api_url"`
	CertSHA256 string `json:"cert_sha256"`
}

// SSManagerConfig is an ss-manager member's manager address and port range.
type SSManagerConfig struct {
	ManagerAddr string `json:"manager_addr"`
	PortMin     int    `json:"port_min"`
	PortMax     int    `json:"port_max"`
}

// StaticConfig is a static member's Shadowsocks port and key; the password
// is only ever sent, never shown.
type StaticConfig struct {
	Port     int    `json:"port"`
	Cipher   string `json:"cipher"`
	Password string `json:"password,omitempty"`
}

// HealthView is a member's last health check.
type HealthView struct {
	Up        bool       `json:"up"`
	CheckedAt *time.Time `json:"checked_at"`
	LastError string     `json:"last_error,omitempty"`
	Keys      int        `json:"keys"`
	Load      float64    `json:"load"`
}

// MemberView is a member as the admin API shows it. The Outline API URL's
// secret path and a static member's password are not shown again.
type MemberView struct {
	ID        string           `json:"id"`
	Name      string           `json:"name"`
	Backend   string           `json:"backend"`
	Host      string           `json:"host"`
	Outline   *OutlineConfig   `json:"outline,omitempty"`
	SSManager *SSManagerConfig `json:"ss_manager,omitempty"`
	Static    *StaticConfig    `json:"static,omitempty"`
	Draining  bool             `json:"draining"`
	Health    HealthView       `json:"health"`
	CreatedAt time.Time        `json:"created_at"`
}

// MemberList is the answer to GET /v1/pool/members.
type MemberList struct {
	Members []MemberView `json:"members"`
}

// GatewayView is a registered gateway.
type GatewayView struct {
	ID            string    `json:"id"`
	PublicURL     string    `json:"public_url"`
	Sessions      int       `json:"sessions"`
	Started       time.Time `json:"started"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	ExpiresAt     time.Time `json:"expires_at"`
	Live          bool      `json:"live"`
	Version       string    `json:"version"`
	// HandshakesPerSec is the gateway's authentications per second over
	// its last heartbeat interval.
	HandshakesPerSec float64 `json:"handshakes_per_sec"`
}

// GatewayList is the answer to GET /v1/gateways.
type GatewayList struct {
	Gateways []GatewayView `json:"gateways"`
}

// ClientConfig is the answer to GET /v1/client/config.
type ClientConfig struct {
	TokenID string `json:"token_id"`
	// Gateways are public URLs, best first.
	Gateways    []string   `json:"gateways"`
	Cipher      string     `json:"cipher"`
	Secret      string     `json:"secret"`
	ExpiresAt   *time.Time `json:"expires_at"`
	QuotaBytes  int64      `json:"quota_bytes"`
	MaxSessions int        `json:"max_sessions"`
	MaxDevices  int        `json:"max_devices"`
	Usage       *UsageView `json:"usage"`
	AccessKeys  AccessKeys `json:"access_keys"`
}
