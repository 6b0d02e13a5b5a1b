// Package mux is the HTTVPS native tunnel's frame codec (docs/03, "HTTVPS
// native tunnel"): many streams multiplexed in the payload bytes of one
// WebSocket. It imports only the standard library.
//
// [Parser] decodes frames from arbitrary chunks of the concatenated
// WebSocket payloads without buffering stream data; the Append helpers write
// whole frames into caller buffers. Neither allocates (the one exception: a
// control frame split across inputs is collected in a pooled 256-byte
// buffer). Stream and tunnel state (windows, ID order, SETTINGS first) belong
// to the caller; this package gives the sentinels and close codes for them.
//
// # Protocol flow
//
//	client                                   gateway
//	GET /v1/tunnel, Sec-WebSocket-Protocol: httvps.v1,
//	Authorization: Bearer <token>      --->  token checked before the 101
//	                                   <---  101 (or the decoy answer)
//	SETTINGS (MAX_STREAMS 0, windows)  --->
//	                                   <---  SETTINGS (MAX_STREAMS, windows, MAX_FRAME)
//	OPEN 1 kind=tcp [first data]       --->  dials the member for stream 1
//	DATA 1 …                           --->  counts against stream and session window
//	                                   <---  WINDOW 1 / WINDOW 0 (credit as the member takes bytes)
//	                                   <---  DATA 1 … (within the client's windows)
//	WINDOW 1 / WINDOW 0                --->  credit as the application reads
//	DATA 1 FIN                         --->  shutdown(SHUT_WR) toward the member
//	                                   <---  DATA 1 FIN: stream 1 closed
//	OPEN 3 beyond MAX_STREAMS          --->
//	                                   <---  RESET 3 REFUSED (retry elsewhere)
//	PING id                            --->
//	                                   <---  PING ACK id
//	                                   <---  GOAWAY last=1 (drain): streams <= 1 go on,
//	                                         new streams go to another tunnel
//	                                   <---  WebSocket close 1001 after the last stream
//
// A frame breaking a rule is an error whose [CloseCode] is the WebSocket close
// code that ends the tunnel.
package mux
