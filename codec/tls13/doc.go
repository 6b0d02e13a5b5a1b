// Package tls13 is the TLS 1.3 record layer (RFC 8446 §5) run after
// crypto/tls has finished the handshake, so that an epoll loop can carry a
// TLS session with no goroutine and no buffer of its own: Opener decrypts
// records in place in the caller's buffer, Sealer encrypts into the caller's
// outgoing buffer. It imports nothing of this module.
//
// # Protocol flow
//
//	client                                 gateway
//	ClientHello ... Finished        <--->  crypto/tls server on HandshakeConn
//	                                       (SessionTicketsDisabled, TLS 1.3 only);
//	                                       Config.KeyLogWriter yields
//	                                       CLIENT/SERVER_TRAFFIC_SECRET_0 -> NewOpener, NewSealer
//	[23 03 03 len] AEAD(data|type|0*) --->  RecordLen on the header, then Open in place
//	                                <---   Seal(dst, TypeApplicationData, data)
//	KeyUpdate (inner type 22)       --->   HandshakeReader.Record -> Opener.Update;
//	                                <---   if requested: SealKeyUpdate(dst, false)
//	alert close_notify              --->   ParseAlert -> ErrCloseNotify
//	                                <---   SealAlert(dst, AlertCloseNotify), then TCP close
//	record breaking a rule          --->   Err* sentinel;
//	                                <---   SealAlert(dst, AlertFor(err)), then TCP close
//
// Every error returned while reading is fatal to the connection (RFC 8446 §6):
// send the alert AlertFor names (nothing for a received alert) and close.
//
// # Limits
//
// Sequence numbers never wrap: a direction stops after 2^64-1 records
// (ErrSeqExhausted). The AEAD confidentiality limits of RFC 8446 §5.5 are the
// caller's to enforce: AES-GCM keys should be updated (SealKeyUpdate) before
// about 2^24.5 full-size records, ChaCha20-Poly1305 needs no update before the
// sequence number runs out; Sealer.Seq tells how many records a key sealed.
package tls13
