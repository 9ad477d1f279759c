//go:build go1.24

package main

import (
	"maps"
	"runtime"
)

func extra() int {
	c := maps.Clone(byInt64)
	clear(byInt32)
	for i := 0; i < 4; i++ {
		s := &Session{ID: "cleanup"}
		h := runtime.AddCleanup(s, func(int) {}, i)
		if i%2 == 0 {
			h.Stop()
		}
		byPtr[s] = i
	}
	return len(c)
}
