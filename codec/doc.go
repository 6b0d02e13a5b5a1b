// Package codec holds the byte formats spoken on the wire. It imports nothing
// of this module, so every rule about bytes lives in one place.
//
// The WebSocket part (RFC 6455, server side, no extensions) is built for an
// epoll relay: [Reader] parses client frames from arbitrary chunks without
// allocating or buffering payload, and the Put/Append helpers write server
// frames into caller buffers.
//
// # Protocol flow
//
//	client                               server
//	GET / Upgrade: websocket       --->  (handshake is not in this package)
//	                               <---  101 Switching Protocols
//	masked binary/text frames      --->  Reader.Next: EventData pieces, unmasked in place
//	                               <---  unmasked frames: PutServerHeader, AppendServerFrame
//	ping                           --->  EventControl OpPing
//	                               <---  pong echoing the ping payload
//	close [code [reason]]          --->  EventControl OpClose, ParseClose
//	                               <---  close echoing the code (AppendClose), then TCP close
//	frame breaking a rule          --->  Next returns an Err* sentinel;
//	                               <---  AppendClose(CloseCode(err)), then TCP close
//
// Limits are enforced from the frame header, before any payload is taken, so a
// peer can never make the server hold more than one partial header and one
// control payload per connection.
package codec
