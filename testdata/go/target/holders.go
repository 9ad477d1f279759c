package main

// The holders scenario: a map that no global holds directly. The global
// srv points to a server, whose field cache points to a cache, whose field
// items is the map that grows. A tracer should name the path from the
// global to the map; the program prints the path it declares, derived from
// its own types through reflect, as a "holder holders <step> → <step> …"
// line on stderr.

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
)

type cache struct {
	name  string
	mu    sync.Mutex
	items map[string][]byte
}

type server struct {
	addr     string
	requests uint64
	cache    *cache
}

var srv *server

//go:noinline
func newServer() *server {
	return &server{addr: ":8080", cache: &cache{name: "items", items: make(map[string][]byte)}}
}

// holdersStep adds n entries to srv.cache.items (making srv at step 0) and
// returns the map's length.
//
//go:noinline
func holdersStep(step, n int) int {
	if srv == nil {
		srv = newServer()
		fmt.Fprintln(os.Stderr, "holder holders", declaredPath())
	}
	c := srv.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 0; i < n; i++ {
		c.items[fmt.Sprintf("item-%04d-%05d", step, i)] = make([]byte, 16)
	}
	srv.requests++
	return len(c.items)
}

// declaredPath is the holder path of srv.cache.items as mapleak-trace
// writes it: the global, then each field as (*Struct).field.
func declaredPath() string {
	st := reflect.TypeOf(srv)
	cacheField, _ := st.Elem().FieldByName("cache")
	itemsField, _ := cacheField.Type.Elem().FieldByName("items")
	steps := []string{
		"main.srv",
		fmt.Sprintf("(%v).%s", st, cacheField.Name),
		fmt.Sprintf("(%v).%s", cacheField.Type, itemsField.Name),
	}
	return strings.Join(steps, " → ")
}
