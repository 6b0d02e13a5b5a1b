package mux

import (
	"encoding/binary"
	"fmt"
)

// SETTINGS ids.
const (
	SettingVersion       = 0x1 // protocol version the sender speaks, >= 1
	SettingMaxStreams    = 0x2 // streams the peer may have open to the sender, 0…2^31-1
	SettingStreamWindow  = 0x3 // initial window of every stream, 1…2^31-1
	SettingSessionWindow = 0x4 // initial window of the tunnel, 1…2^31-1
	SettingMaxFrame      = 0x5 // largest DATA/OPEN payload accepted, 16384…2^24-1
)

// Settings is what a side accepts from its peer (docs/03, SETTINGS).
type Settings struct {
	Version       uint32
	MaxStreams    uint32
	StreamWindow  uint32
	SessionWindow uint32
	MaxFrame      uint32
}

// DefaultSettings returns what a side assumes before the peer's SETTINGS.
func DefaultSettings() Settings {
	return Settings{
		Version:       Version,
		MaxStreams:    DefaultMaxStreams,
		StreamWindow:  DefaultStreamWindow,
		SessionWindow: DefaultSessionWindow,
		MaxFrame:      DefaultMaxFrame,
	}
}

// Validate checks every field against its range; the error wraps
// ErrBadSettings.
func (s Settings) Validate() error {
	switch {
	case s.Version < 1:
		return fmt.Errorf("%w: VERSION %d", ErrBadSettings, s.Version)
	case s.MaxStreams > MaxStreamID:
		return fmt.Errorf("%w: MAX_STREAMS %d", ErrBadSettings, s.MaxStreams)
	case s.StreamWindow < 1 || s.StreamWindow > MaxWindow:
		return fmt.Errorf("%w: STREAM_WINDOW %d", ErrBadSettings, s.StreamWindow)
	case s.SessionWindow < 1 || s.SessionWindow > MaxWindow:
		return fmt.Errorf("%w: SESSION_WINDOW %d", ErrBadSettings, s.SessionWindow)
	case s.MaxFrame < MinMaxFrame || s.MaxFrame > MaxLength:
		return fmt.Errorf("%w: MAX_FRAME %d", ErrBadSettings, s.MaxFrame)
	}
	return nil
}

// ParseSettings decodes a SETTINGS payload: it starts from the defaults,
// applies each (id, value) pair in order (a repeated id: the last wins),
// ignores unknown ids and validates the result. A payload that is not a
// whole number of pairs, or more than MaxSettings pairs, is ErrFrameLength.
func ParseSettings(p []byte) (Settings, error) {
	if len(p)%6 != 0 || len(p) > MaxSettings*6 {
		return Settings{}, ErrFrameLength
	}
	s := DefaultSettings()
	for ; len(p) > 0; p = p[6:] {
		v := binary.BigEndian.Uint32(p[2:])
		switch binary.BigEndian.Uint16(p) {
		case SettingVersion:
			s.Version = v
		case SettingMaxStreams:
			s.MaxStreams = v
		case SettingStreamWindow:
			s.StreamWindow = v
		case SettingSessionWindow:
			s.SessionWindow = v
		case SettingMaxFrame:
			s.MaxFrame = v
		}
	}
	if err := s.Validate(); err != nil {
		return Settings{}, err
	}
	return s, nil
}

// ParseReset decodes a RESET payload. The code is returned as sent: treat
// one that is not Known as ResetCancel.
func ParseReset(p []byte) (ResetCode, error) {
	if len(p) != 4 {
		return 0, ErrFrameLength
	}
	return ResetCode(binary.BigEndian.Uint32(p)), nil
}

// ParseWindow decodes a WINDOW payload; an increment of 0 or above
// MaxWindow is ErrBadWindow.
func ParseWindow(p []byte) (uint32, error) {
	if len(p) != 4 {
		return 0, ErrFrameLength
	}
	inc := binary.BigEndian.Uint32(p)
	if inc == 0 || inc > MaxWindow {
		return 0, ErrBadWindow
	}
	return inc, nil
}

// ParsePing decodes a PING payload (its ACK flag is in the header).
func ParsePing(p []byte) ([8]byte, error) {
	var id [8]byte
	if len(p) != 8 {
		return id, ErrFrameLength
	}
	copy(id[:], p)
	return id, nil
}

// ParseGoAway decodes a GOAWAY payload. The last stream ID's top bit is
// reserved and ignored.
func ParseGoAway(p []byte) (last uint32, c GoAwayCode, err error) {
	if len(p) != 8 {
		return 0, 0, ErrFrameLength
	}
	return binary.BigEndian.Uint32(p) & MaxStreamID, GoAwayCode(binary.BigEndian.Uint32(p[4:])), nil
}

// AddWindow returns window w grown by a WINDOW increment inc, or
// ErrWindowOverflow if it would exceed MaxWindow (docs/03: on stream 0 that
// closes the tunnel, on a stream it resets the stream FLOW_CONTROL).
func AddWindow(w, inc uint32) (uint32, error) {
	if uint64(w)+uint64(inc) > MaxWindow {
		return w, ErrWindowOverflow
	}
	return w + inc, nil
}
