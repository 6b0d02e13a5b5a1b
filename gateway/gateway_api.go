package gateway

// This file holds the exported surface the rest of the module uses; the
// implementation lives in server.go (accept, handshake), loop.go (relay
// event loops), tcp.go and udp.go (the two session kinds) and drain.go.
