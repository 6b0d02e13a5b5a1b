package main

import (
	"crypto/tls"
	"log/slog"

	"github.com/httvps/httvps/client"
)

// nativeTunnel builds the native tunnel transport (client.NewTunnel): a
// few /v1/tunnel WebSockets carrying every stream, failing over across
// the key's gateways, sent as device deviceID ("": the address).
var nativeTunnel = func(deviceID string) client.NativeFunc {
	return func(k *client.Key, base *tls.Config, log *slog.Logger) (client.Transport, error) {
		return client.NewTunnel(client.TunnelConfig{Gateways: k.Gateways, Token: k.Token, DeviceID: deviceID, TLSConfig: base, Logger: log}), nil
	}
}
