package gateway

import (
	"reflect"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/cloudwego/netpoll"
)

// quiesce makes sure netpoll's poller reads nothing more from c, so that
// what c's input buffer holds is final. It is for the close callback of
// a hand-off (handshake.detach, startFallback), and reports false if it
// could not (a netpoll other than v0.7.2).
//
// The close's EPOLL_CTL_DEL does not wait for the poller: an event it had
// already taken from epoll_wait is still processed, and its read lands in
// the input buffer after the close callback has taken the bytes (measured:
// about 1 MiB lost from an upload streaming during a fallback hand-off).
// The poller handles an event only after moving the fd's operator from
// state 1 (in use) to 2 (busy), and back to 1 when done; netpoll's own
// finalizer (which runs after our callback) waits for 1 and sets 0 before
// freeing it. quiesce does that wait and that store itself, earlier: once
// the state is 0 the poller skips the fd, and the finalizer finds it done.
func quiesce(c netpoll.Connection) bool {
	p := operatorState(c)
	if p == nil {
		return false
	}
	for !atomic.CompareAndSwapInt32(p, 1, 0) {
		if atomic.LoadInt32(p) == 0 {
			return true
		}
		runtime.Gosched()
	}
	return true
}

// operatorState finds the state field of c's FDOperator (netpoll v0.7.2:
// connection.operator.state, an int32 used with atomics), or nil.
func operatorState(c netpoll.Connection) *int32 {
	v := reflect.ValueOf(c)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	op := v.Elem().FieldByName("operator")
	if !op.IsValid() || op.Kind() != reflect.Pointer || op.IsNil() || op.Type().Elem() != reflect.TypeOf(netpoll.FDOperator{}) {
		return nil
	}
	st := op.Elem().FieldByName("state")
	if !st.IsValid() || st.Kind() != reflect.Int32 {
		return nil
	}
	return (*int32)(unsafe.Pointer(st.UnsafeAddr()))
}
