//go:build go1.24

package main

import (
	"runtime"
	"sync/atomic"
)

// handle is an object with a cleanup (Go 1.24+).
type handle struct {
	id  int
	pad [3]int64
}

// cleanupArg is the cleanup's argument: it has a pointer, so each one is its
// own allocation (Go 1.26+ keys a queued cleanup by it).
type cleanupArg struct {
	id   int
	name string
}

var (
	handles     = map[*handle]int{}
	handleOrder []*handle
	cleanRan    atomic.Int64
)

const cleanupsSupported = true

//go:noinline
func releaseHandle(a cleanupArg) { cleanRan.Add(1) }

// cleanupStep adds 150 held handles with cleanups, releases the 50 oldest
// (their cleanups then run), and makes 100 transient ones (they run too).
//
//go:noinline
func cleanupStep(step int) {
	for i := 0; i < 150; i++ {
		h := &handle{id: step*1000 + i}
		runtime.AddCleanup(h, releaseHandle, cleanupArg{id: h.id, name: "held"})
		handles[h] = h.id
		handleOrder = append(handleOrder, h)
	}
	for i := 0; i < 50 && len(handleOrder) > 0; i++ {
		delete(handles, handleOrder[0])
		handleOrder = handleOrder[1:]
	}
	for i := 0; i < 100; i++ {
		t := &handle{id: -1}
		runtime.AddCleanup(t, releaseHandle, cleanupArg{id: -i, name: "transient"})
	}
}
