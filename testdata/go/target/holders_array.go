package main

// The array scenario: a map in an element of an array of structs inside a
// heap object. The global shc points to a shardedCache, whose field parts
// is an array of part values (inline, no pointer to any of them); the map
// of parts[5] grows. A tracer steps from the map back to the shardedCache
// through the array's element size and the field's offset. Prints
// "holder array <path>".

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
)

type part struct {
	mu sync.Mutex
	m  map[uint64]string
}

type shardedCache struct {
	name  string
	parts [8]part
}

var shc *shardedCache

// growingPart is the index of the part whose map grows.
const growingPart = 5

//go:noinline
func newShardedCache() *shardedCache {
	c := &shardedCache{name: "sharded"}
	for i := range c.parts {
		c.parts[i].m = map[uint64]string{0: "seed"}
	}
	return c
}

// arrayStep adds n entries to shc.parts[growingPart].m (making shc at
// step 0) and returns that map's length.
//
//go:noinline
func arrayStep(step, n int) int {
	if shc == nil {
		shc = newShardedCache()
		fmt.Fprintln(os.Stderr, "holder array", declaredArrayPath())
	}
	p := &shc.parts[growingPart]
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := 0; i < n; i++ {
		p.m[uint64(step*n+i+1)] = "v"
	}
	return len(p.m)
}

// declaredArrayPath is the holder path of shc.parts[5].m.
func declaredArrayPath() string {
	st := reflect.TypeOf(shc)
	partsField, _ := st.Elem().FieldByName("parts")
	elem := partsField.Type.Elem()
	mField, _ := elem.FieldByName("m")
	steps := []string{
		"main.shc",
		fmt.Sprintf("(%v).%s", st, partsField.Name),
		fmt.Sprintf("[%d]", growingPart),
		fmt.Sprintf("(%v).%s", elem, mField.Name),
	}
	return strings.Join(steps, " → ")
}
