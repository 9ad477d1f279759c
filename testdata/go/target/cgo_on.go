//go:build cgo

package main

// A tiny static C function, called once from init, so that the cgo fixture
// variants really link C code (runtime/cgo, an external linker). It prints
// nothing: the program's output is the same as without cgo.

/*
static int mapleak_cgo_twice_plus_one(int x) { return 2 * x + 1; }
*/
import "C"

func init() {
	if got := C.mapleak_cgo_twice_plus_one(20); got != 41 {
		panic("cgo: mapleak_cgo_twice_plus_one(20) != 41")
	}
}
