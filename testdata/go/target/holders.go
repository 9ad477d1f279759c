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
	"runtime"
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

// The nested scenario: a map held as the value of another map. The global
// tenantMaps maps a tenant's name to its map; the map of one tenant grows,
// the others stay as they are. Prints "holder nested <path>".

var tenantMaps map[string]map[string]int64

// growingTenant is the key of the map that grows.
const growingTenant = "tenant-acme"

// nestedStep adds n entries to tenantMaps[growingTenant] (making
// tenantMaps at step 0) and returns that map's length.
//
//go:noinline
func nestedStep(step, n int) int {
	if tenantMaps == nil {
		tenantMaps = make(map[string]map[string]int64)
		for i := 0; i < 24; i++ {
			t := fmt.Sprintf("tenant-%03d", i)
			if i == 11 {
				t = growingTenant
			}
			tenantMaps[t] = map[string]int64{"seed": 1}
		}
		fmt.Fprintln(os.Stderr, "holder nested", declaredNestedPath())
	}
	m := tenantMaps[growingTenant]
	for i := 0; i < n; i++ {
		m[fmt.Sprintf("n-%04d-%05d", step, i)] = int64(i)
	}
	// Stored again at every step, as a service touching its registry would
	// (written, not grown; the tracer finds tenantMaps through the global
	// that holds it whether or not it tracks it).
	tenantMaps[growingTenant] = m
	return len(m)
}

// declaredNestedPath is the holder path of tenantMaps[growingTenant] as
// mapleak-trace writes it with --show-keys: the global, then the key as
// Go would quote it (without --show-keys the key is redacted).
func declaredNestedPath() string {
	return strings.Join([]string{"main.tenantMaps", fmt.Sprintf("[%q]", growingTenant)}, " → ")
}

// The goroutine scenario: a map that only a goroutine holds. The
// aggregator's map is made by startAggregator and captured by the closure
// it starts as a goroutine; nothing global holds it. Prints "holder
// goroutine <path>": the goroutine's id (from runtime.Stack) and the
// function it runs (runtime.FuncForPC).

var aggSteps = make(chan int)
var aggDone = make(chan int)

//go:noinline
func startAggregator() {
	m := make(map[string]int32)
	go func() {
		fmt.Fprintln(os.Stderr, "holder goroutine", declaredGoroutinePath())
		aggDone <- 0
		for n := range aggSteps {
			for i := 0; i < n; i++ {
				m[fmt.Sprintf("agg-%07d", len(m))]++
			}
			aggDone <- len(m)
		}
	}()
	<-aggDone
}

// aggregatorStep has the aggregator add n entries (starting it at step 0)
// and returns its map's length.
//
//go:noinline
func aggregatorStep(step, n int) int {
	if step == 0 {
		startAggregator()
	}
	aggSteps <- n
	return <-aggDone
}

// declaredGoroutinePath is the holder path of the aggregator's map as
// mapleak-trace writes it: the goroutine that holds it on its stack, by
// id and the function it started with. Called by that goroutine.
//
//go:noinline
func declaredGoroutinePath() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	var id int
	fmt.Sscanf(string(buf), "goroutine %d [", &id)
	pc, _, _, _ := runtime.Caller(1)
	return fmt.Sprintf("goroutine %d (%s)", id, runtime.FuncForPC(pc).Name())
}
