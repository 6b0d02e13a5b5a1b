// Package tls12 is the TLS 1.2 record layer (RFC 5246 §6.2) for the AEAD
// suites (RFC 5288 AES-GCM, RFC 7905 ChaCha20-Poly1305), run after crypto/tls
// has finished the handshake, so that an epoll loop can carry a TLS session
// with no goroutine and no buffer of its own: Opener decrypts records in place
// in the caller's buffer, Sealer encrypts into the caller's outgoing buffer.
// Its names and semantics follow codec/tls13. It imports nothing of this
// module.
//
// # Protocol flow
//
//	client                                 gateway
//	ClientHello (random at record 11..43) ---> HelloRandom: client_random
//	                                 <---  ServerHello: HelloRandom: server_random
//	... ChangeCipherSpec, Finished   <---> crypto/tls server (TLS 1.2 AEAD suites,
//	                                       SessionTicketsDisabled); KeyLogWriter
//	                                       "CLIENT_RANDOM <cr> <master>";
//	                                       Keys -> NewOpener(.., 1), NewSealer(.., 1)
//	                                       (each Finished used sequence number 0)
//	[23 03 03 len] nonce? AEAD(data)  ---> RecordLen on the header, then Open in place
//	                                 <---  Seal(dst, TypeApplicationData, data)
//	ClientHello (renegotiation)       ---> ErrRenegotiation;
//	                                 <---  SealAlert(dst, AlertNoRenegotiation) (warning), TCP close
//	alert close_notify                ---> ParseAlert -> ErrCloseNotify
//	                                 <---  SealAlert(dst, AlertCloseNotify), then TCP close
//	record breaking a rule            ---> Err* sentinel;
//	                                 <---  SealAlert(dst, AlertFor(err)), then TCP close
//
// Every error returned while reading is fatal to the connection: send the
// alert AlertFor names (nothing for a received alert) and close.
//
// # Renegotiation
//
// The gateway never renegotiates. A client's ClientHello after the handshake
// (or a HelloRequest, which only a server may send) is answered with
// no_renegotiation, at warning level as RFC 5246 §7.2.2 requires of that
// alert; RFC 5746 §4.5 keeps the fatal handshake_failure for SSLv3, which
// lacks no_renegotiation. The gateway then closes: a client waiting for a
// ServerHello would otherwise hang.
//
// # Limits
//
// Sequence numbers never wrap: a direction stops after 2^64-1 records
// (ErrSeqExhausted). The GCM explicit nonce is the sequence number, so it is
// unique per key. AES-GCM confidentiality limits (about 2^24.5 full records,
// RFC 8446 §5.5) cannot be met by rekeying in TLS 1.2 without renegotiation;
// Sealer.Seq tells how many records a key sealed if a caller wants to close
// long sessions.
package tls12
