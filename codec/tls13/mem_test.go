package tls13

import "runtime"

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func runtimeKeepAlive(x any) { runtime.KeepAlive(x) }
