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

// The shards scenario: a map in an element of a slice of structs. The
// global shardReg points to a shardSet, whose field shards is a slice of
// shard values; the map of shards[2] grows, the others stay as they are.
// Prints "holder shards <path>".

type shard struct {
	name string
	m    map[int64]string
}

type shardSet struct {
	owner  string
	shards []shard
}

var shardReg *shardSet

// growingShard is the index of the shard whose map grows.
const growingShard = 2

//go:noinline
func newShardSet() *shardSet {
	s := &shardSet{owner: "reg", shards: make([]shard, 4)}
	for i := range s.shards {
		s.shards[i] = shard{name: fmt.Sprint("shard-", i), m: make(map[int64]string)}
		s.shards[i].m[-1] = "seed"
	}
	return s
}

// shardsStep adds n entries to shards[growingShard].m (making shardReg at
// step 0) and returns that map's length.
//
//go:noinline
func shardsStep(step, n int) int {
	if shardReg == nil {
		shardReg = newShardSet()
		fmt.Fprintln(os.Stderr, "holder shards", declaredShardPath())
	}
	m := shardReg.shards[growingShard].m
	for i := 0; i < n; i++ {
		m[int64(step*n+i)] = "v"
	}
	return len(m)
}

// declaredShardPath is the holder path of shardReg.shards[2].m.
func declaredShardPath() string {
	st := reflect.TypeOf(shardReg)
	shardsField, _ := st.Elem().FieldByName("shards")
	elem := shardsField.Type.Elem()
	mField, _ := elem.FieldByName("m")
	steps := []string{
		"main.shardReg",
		fmt.Sprintf("(%v).%s", st, shardsField.Name),
		fmt.Sprintf("[%d]", growingShard),
		fmt.Sprintf("(%v).%s", elem, mField.Name),
	}
	return strings.Join(steps, " → ")
}

// The iface scenario: a map behind an interface. The global handler, an
// `any`, holds a *box, whose field m is the map that grows. Prints
// "holder iface <path>".

type box struct {
	label string
	m     map[string]int
}

var handler any

//go:noinline
func newBox() *box {
	return &box{label: "box", m: make(map[string]int)}
}

// ifaceStep adds n entries to handler.(*box).m (making the box at step 0)
// and returns that map's length.
//
//go:noinline
func ifaceStep(step, n int) int {
	if handler == nil {
		handler = newBox()
		fmt.Fprintln(os.Stderr, "holder iface", declaredIfacePath())
	}
	b := handler.(*box)
	for i := 0; i < n; i++ {
		b.m[fmt.Sprintf("k-%04d-%05d", step, i)] = i
	}
	return len(b.m)
}

// declaredIfacePath is the holder path of handler.(*box).m.
func declaredIfacePath() string {
	dyn := reflect.TypeOf(handler)
	mField, _ := dyn.Elem().FieldByName("m")
	steps := []string{
		"main.handler",
		fmt.Sprintf(".(%v)", dyn),
		fmt.Sprintf("(%v).%s", dyn, mField.Name),
	}
	return strings.Join(steps, " → ")
}
