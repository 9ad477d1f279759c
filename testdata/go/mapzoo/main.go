// mapzoo exercises every map entry point the tracer cares about (each fast
// variant of assign and delete, clear, clone, finalizers, cleanups) so that
// inspect tests see every runtime function in the binary. It runs briefly and
// prints a checksum.
package main

import (
	"fmt"
	"os"
	"runtime"
)

type Session struct {
	ID   string
	Data [4]int64
}

type BigKey struct {
	A, B, C int64
}

var (
	byPtr    = map[*Session]int{}
	byString = make(map[string]*Session)
	byInt64  = make(map[int64]int64, 64)
	byInt32  = map[int32]string{}
	byStruct = map[BigKey]int{}
)

//go:noinline
func fill(n int) int {
	sum := 0
	for i := 0; i < n; i++ {
		s := &Session{ID: fmt.Sprintf("s%06d", i)}
		byPtr[s] = i
		byString[s.ID] = s
		byInt64[int64(i)] = int64(i * 2)
		byInt32[int32(i)] = s.ID
		byStruct[BigKey{int64(i), 1, 2}] = i
		if i%3 == 0 {
			delete(byPtr, s)
			delete(byString, s.ID)
			delete(byInt64, int64(i))
			delete(byInt32, int32(i))
			delete(byStruct, BigKey{int64(i), 1, 2})
		}
		sum += i
	}
	return sum
}

func main() {
	n := 1000
	if len(os.Args) > 1 {
		fmt.Sscan(os.Args[1], &n)
	}
	sum := fill(n)
	for i := 0; i < 10; i++ {
		s := &Session{ID: "fin"}
		runtime.SetFinalizer(s, func(*Session) {})
		if i%2 == 0 {
			runtime.SetFinalizer(s, nil)
		}
		byPtr[s] = i
	}
	sum += extra()
	runtime.GC()
	fmt.Println("mapzoo", sum, len(byPtr), len(byString), len(byInt64), len(byInt32), len(byStruct))
}
