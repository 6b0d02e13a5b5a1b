package client

import (
	"io"

	"github.com/httvps/httvps/codec/mux"
)

// udpQueueBytes bounds the bytes of packets queued toward the application
// per udp stream (with TunnelConfig.UDPQueue packets).
const udpQueueBytes = 256 << 10

// tunPacket is a udp stream as a net.Conn: one Write is one DATA frame and
// one Shadowsocks UDP packet, one Read returns one.
type tunPacket struct{ *tunStream }

func (p *tunPacket) Write(b []byte) (int, error) {
	if len(b) > mux.MaxUDPPacket {
		return 0, ErrPacketTooLarge
	}
	st := p.tunStream
	st.wmu.Lock()
	defer st.wmu.Unlock()
	st.mu.Lock()
	if st.finQueued {
		st.mu.Unlock()
		return 0, ErrStreamWriteClosed
	}
	st.mu.Unlock()
	n, err := st.sendSome(b, false)
	if err == nil && n != len(b) {
		err = ErrPacketTooLarge
	}
	return n, err
}

// Read returns the next packet, cut to len(b) if longer (as UDP does).
func (p *tunPacket) Read(b []byte) (int, error) {
	st := p.tunStream
	st.mu.Lock()
	defer st.mu.Unlock()
	for {
		if len(st.pkts) > 0 {
			pkt := st.pkts[0]
			st.pkts[0] = nil
			st.pkts = st.pkts[1:]
			st.pktBytes -= len(pkt)
			n := copy(b, pkt)
			st.t.down.Add(int64(len(pkt)))
			return n, nil
		}
		switch {
		case st.remoteFin:
			return 0, io.EOF
		case st.closed:
			return 0, ErrStreamClosed
		case st.err != nil:
			return 0, st.err
		}
		if st.id == 0 && !st.kicked && !st.reopen {
			st.kicked = true
			go st.ensureOpen()
		}
		if err := st.wait(st.rdl); err != nil {
			return 0, err
		}
	}
}

// onPacketPiece collects a udp DATA frame and queues it whole, or drops
// it (counted) when the queue is full. udp is not flow-controlled.
func (st *tunStream) onPacketPiece(s *tunSession, id uint32, piece []byte, last, fin bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.sess != s || st.id != id || st.closed || st.err != nil {
		return
	}
	st.accepted = true
	if len(st.pkt)+len(piece) > mux.MaxUDPPacket {
		st.pktDrop = true // an oversized packet is dropped whole, at its end
	} else if !st.pktDrop {
		st.pkt = append(st.pkt, piece...)
	}
	if fin {
		st.remoteFin = true
	}
	if last {
		switch {
		case st.pktDrop:
			st.t.drops.Add(1)
		case len(st.pkt) == 0: // an empty DATA (FIN alone) carries no packet
		case len(st.pkts) >= st.t.cfg.UDPQueue || st.pktBytes+len(st.pkt) > udpQueueBytes:
			st.t.drops.Add(1)
		default:
			pkt := append([]byte(nil), st.pkt...)
			st.pkts = append(st.pkts, pkt)
			st.pktBytes += len(pkt)
		}
		st.pkt, st.pktDrop = st.pkt[:0], false
	}
	st.cond.Broadcast()
}
