// target runs the end-to-end scenarios of mapleak-trace in one process, in
// lock-step so that every map length is known at every forced GC cycle:
//
//	leaky    a global session cache that only grows       map[string]*main.session
//	lru      a bounded LRU under heavy churn               map[int]*list.Element
//	short    thousands of short-lived maps per second      map[int32]int64
//	bloat    grown to a million entries, emptied to ten    map[uint64]uint32
//	private  a goroutine-private map that only grows       map[main.key24]int
//	fin      objects with finalizers held as map keys      map[*main.resource]int
//	         (their finalizers never run), next to objects
//	         whose finalizers do run
//	finstack SetFinalizer called at recursion depths 0..199, each
//	         from a fresh goroutine: at some depths the call
//	         itself grows the stack and restarts
//	cleanup  the same with runtime.AddCleanup (Go 1.24+)   map[*main.handle]int
//	ptrdel   a pointer-keyed map with deletes              map[*main.node]int
//	tenants  20,000 per-tenant maps made at newTenant,      map[int32]int32
//	         each gaining an entry every twentieth step:
//	         their total grows every cycle, no single map
//	         does
//	tenantsfixed 5,000 such maps made at newFixedTenant,    map[int32]int32
//	         whose total goes up and down: bounded
//	holders  a map held through pointers and struct fields: map[string][]uint8
//	         global srv → *server.cache → *cache.items
//	         (holders.go; prints its declared path)
//	shards   a map in an element of a slice of structs:    map[int64]string
//	         global shardReg → *shardSet.shards → [2] → shard.m
//	         (holders.go; prints its declared path)
//	iface    a map behind an interface:                  map[string]int
//	         global handler (any) holding *box → box.m
//	         (holders.go; prints its declared path)
//	ifaceheap a map behind a non-empty interface in a heap object:
//	         global rtr → *router.store (Store) holding *memStore → memStore.data:
//	         map[string]uint16 (holders_iface.go; prints its declared path)
//	array    a map in an element of an array of structs:   map[uint64]string
//	         global shc → *shardedCache.parts → [5] → part.m
//	         (holders_array.go; prints its declared path)
//	nested   a map held as the value of another map:       map[string]int64
//	         global tenantMaps → ["tenant-acme"]
//	         (holders.go; prints its declared path)
//	goroutine a map only a goroutine's closure holds:      map[string]int32
//	         goroutine N (main.startAggregator.func1)
//	         (holders.go; prints its declared path)
//
// With -wait it prints "ready" and waits for a line on stdin before creating
// any map, so that a tracer can attach first. stdout is deterministic (the
// same with and without a tracer); stderr carries "cycle N <name> L" lines
// after each forced GC, for checking the tracer's len_by_cycle.
package main

import (
	"bufio"
	"container/list"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"
)

type session struct {
	token string
	user  int
	data  [6]int64
}

type key24 struct{ a, b, c int64 }

var sessions map[string]*session

//go:noinline
func newSessionStore() map[string]*session {
	return make(map[string]*session)
}

type lru struct {
	cap   int
	items map[int]*list.Element
	order *list.List
}

// newLRU makes its map without a size hint: it grows up to its bound in the
// first step (so a tracer sees it grow and follows it), then churns at the
// bound and must not be judged growing.
//
//go:noinline
func newLRU(capacity int) *lru {
	return &lru{cap: capacity, items: make(map[int]*list.Element), order: list.New()}
}

func (c *lru) put(k int) {
	if e, ok := c.items[k]; ok {
		c.order.MoveToFront(e)
		return
	}
	c.items[k] = c.order.PushFront(k)
	if c.order.Len() > c.cap {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.items, old.Value.(int))
	}
}

var shortMade atomic.Int64

//go:noinline
func shortLived(stop *atomic.Bool, pause time.Duration, keys, hint int) {
	sink := 0
	for !stop.Load() {
		for j := 0; j < 5; j++ {
			m := make(map[int32]int64, hint)
			n := 10 + j*10
			if keys > 0 {
				n = keys
			}
			for i := 0; i < n; i++ {
				m[int32(i)] = int64(i)
			}
			sink += len(m)
			shortMade.Add(1)
		}
		time.Sleep(pause)
	}
	_ = sink
}

//go:noinline
func privateWorker(steps <-chan int, done chan<- int) {
	local := make(map[key24]int)
	keepOnHeap(local)
	next := int64(0)
	for n := range steps {
		for i := 0; i < n; i++ {
			local[key24{next, next * 3, 7}] = i
			next++
		}
		done <- len(local)
	}
}

// keepOnHeap makes the worker's map escape to the heap (as a map shared with
// a helper would) without any global ever holding it.
//
//go:noinline
func keepOnHeap(m map[key24]int) {
	if len(os.Args) > 1000 {
		heapSink = m
	}
}

var heapSink map[key24]int

var bloat map[uint64]uint32

//go:noinline
func newBloat() map[uint64]uint32 {
	return make(map[uint64]uint32)
}

func main() {
	steps := flag.Int("steps", 12, "lock-steps to run (0 = forever)")
	stepMs := flag.Int("step-ms", 300, "pause after each forced GC, in ms")
	perStep := flag.Int("leak-per-step", 2000, "sessions leaked per step")
	bloatN := flag.Int("bloat", 1000000, "entries the bloat map grows to")
	wait := flag.Bool("wait", false, "print ready and wait for a line on stdin")
	shortPause := flag.Duration("short-pause", time.Millisecond, "short: pause after every 5 maps")
	shortKeys := flag.Int("short-keys", 0, "short: keys per map (0: 10 to 50; 2000 grows each to a large bucket array or table split)")
	shortHint := flag.Int("short-hint", 0, "short: size hint of each map (4000 allocates a large bucket array at once)")
	forceGC := flag.Bool("force-gc", true, "run a GC cycle after each step (false with GOGC=off: a program that runs no GC)")
	only := flag.String("scenarios", "leaky,lru,short,bloat,private", "scenarios to run (also: fin, finstack, cleanup, ptrdel, tenants, tenantsfixed, holders, shards, iface, ifaceheap, array, nested, goroutine)")
	tenantsN := flag.Int("tenants", 20000, "tenants: per-tenant maps")
	fixedN := flag.Int("fixed-tenants", 5000, "tenantsfixed: per-tenant maps")
	ballastMiB := flag.Int("ballast-mib", 0, "MiB of linked heap objects allocated before the scenarios start (a large heap for the holder search)")
	holdersN := flag.Int("holders-per-step", 1500, "holders, shards, iface, ifaceheap, array, nested, goroutine: entries added per step")
	flag.Parse()
	on := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		on[s] = true
	}

	if *wait {
		fmt.Fprintln(os.Stderr, "ready", os.Getpid())
		bufio.NewReader(os.Stdin).ReadString('\n')
	}

	if *ballastMiB > 0 {
		ballast = makeBallast(*ballastMiB)
		fmt.Fprintf(os.Stderr, "ballast %d MiB\n", *ballastMiB)
	}
	var stop atomic.Bool
	if on["short"] {
		go shortLived(&stop, *shortPause, *shortKeys, *shortHint)
	}
	var cache *lru
	if on["lru"] {
		cache = newLRU(1000)
	}
	privSteps := make(chan int)
	privDone := make(chan int)
	if on["private"] {
		go privateWorker(privSteps, privDone)
	}
	if on["leaky"] {
		sessions = newSessionStore()
	}
	lruNext := 0
	for step := 0; *steps == 0 || step < *steps; step++ {
		line := fmt.Sprintf("step %d", step)
		cycleLine := ""
		if on["leaky"] {
			for i := 0; i < *perStep; i++ {
				tok := fmt.Sprintf("tok-%08d-%04d", step, i)
				sessions[tok] = &session{token: tok, user: i}
			}
			line += fmt.Sprintf(" leaky=%d", len(sessions))
			cycleLine += fmt.Sprintf(" leaky %d", len(sessions))
		}
		if on["lru"] {
			for i := 0; i < 5000; i++ {
				cache.put(lruNext)
				lruNext++
			}
			line += fmt.Sprintf(" lru=%d", len(cache.items))
			cycleLine += fmt.Sprintf(" lru %d", len(cache.items))
		}
		if on["bloat"] {
			switch step {
			case 0:
				bloat = newBloat()
				for i := 0; i < *bloatN; i++ {
					bloat[uint64(i)] = uint32(i)
				}
			case 1:
				for i := 10; i < *bloatN; i++ {
					delete(bloat, uint64(i))
				}
			}
			line += fmt.Sprintf(" bloat=%d", len(bloat))
			cycleLine += fmt.Sprintf(" bloat %d", len(bloat))
		}
		if on["private"] {
			privSteps <- 1500
			n := <-privDone
			line += fmt.Sprintf(" private=%d", n)
			cycleLine += fmt.Sprintf(" private %d", n)
		}
		if on["finstack"] {
			finStackStep()
		}
		if on["fin"] {
			finStep(step)
			line += fmt.Sprintf(" fin=%d", len(held))
			cycleLine += fmt.Sprintf(" fin %d", len(held))
		}
		if on["fin"] || on["finstack"] {
			cycleLine += fmt.Sprintf(" finset %d", finSet)
		}
		if on["cleanup"] && cleanupsSupported {
			cleanupStep(step)
			line += fmt.Sprintf(" cleanup=%d", len(handles))
			cycleLine += fmt.Sprintf(" cleanup %d", len(handles))
		}
		if on["ptrdel"] {
			ptrdelStep(step)
			line += fmt.Sprintf(" ptrdel=%d", len(nodes))
			cycleLine += fmt.Sprintf(" ptrdel %d", len(nodes))
		}
		if on["tenants"] {
			n := tenantsStep(step, *tenantsN)
			line += fmt.Sprintf(" tenants=%d", n)
			cycleLine += fmt.Sprintf(" tenants %d", n)
		}
		if on["tenantsfixed"] {
			n := fixedTenantsStep(step, *fixedN)
			line += fmt.Sprintf(" tenantsfixed=%d", n)
			cycleLine += fmt.Sprintf(" tenantsfixed %d", n)
		}
		if on["holders"] {
			n := holdersStep(step, *holdersN)
			line += fmt.Sprintf(" holders=%d", n)
			cycleLine += fmt.Sprintf(" holders %d", n)
		}
		if on["shards"] {
			n := shardsStep(step, *holdersN)
			line += fmt.Sprintf(" shards=%d", n)
			cycleLine += fmt.Sprintf(" shards %d", n)
		}
		if on["iface"] {
			n := ifaceStep(step, *holdersN)
			line += fmt.Sprintf(" iface=%d", n)
			cycleLine += fmt.Sprintf(" iface %d", n)
		}
		if on["ifaceheap"] {
			n := ifaceHeapStep(step, *holdersN)
			line += fmt.Sprintf(" ifaceheap=%d", n)
			cycleLine += fmt.Sprintf(" ifaceheap %d", n)
		}
		if on["array"] {
			n := arrayStep(step, *holdersN)
			line += fmt.Sprintf(" array=%d", n)
			cycleLine += fmt.Sprintf(" array %d", n)
		}
		if on["nested"] {
			n := nestedStep(step, *holdersN)
			line += fmt.Sprintf(" nested=%d", n)
			cycleLine += fmt.Sprintf(" nested %d", n)
		}
		if on["goroutine"] {
			n := aggregatorStep(step, *holdersN)
			line += fmt.Sprintf(" goroutine=%d", n)
			cycleLine += fmt.Sprintf(" goroutine %d", n)
		}
		if *forceGC {
			runtime.GC()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Println(line)
		if on["fin"] || on["finstack"] {
			cycleLine += fmt.Sprintf(" finran %d", finRan.Load())
		}
		if on["cleanup"] && cleanupsSupported {
			cycleLine += fmt.Sprintf(" cleanran %d", cleanRan.Load())
		}
		fmt.Fprintf(os.Stderr, "cycle %d%s\n", ms.NumGC, cycleLine)
		pause := time.Duration(*stepMs) * time.Millisecond
		if step == *steps-1 && pause > 50*time.Millisecond {
			// The last step: long enough for a tracer to read this cycle,
			// shorter than a step, so that maps that grew every step do not
			// end on a level stretch longer than any before (which reads
			// as "stopped growing").
			pause = 50 * time.Millisecond
		}
		time.Sleep(pause)
	}
	stop.Store(true)
	fmt.Println("done")
}

// resource is an object with a finalizer (40 bytes: not a tiny allocation).
type resource struct {
	id  int
	buf [4]int64
}

// held keeps objects with finalizers as keys: their finalizers never run.
var held = map[*resource]int{}

var (
	finRan atomic.Int64
	finSet int
	// finOrder remembers insertion order, to release the oldest few.
	finOrder []*resource
)

//go:noinline
func closeResource(r *resource) { finRan.Add(1) }

// finStep adds 200 held objects with finalizers, releases the 50 oldest
// (their finalizers then run), and makes 100 transient ones (they run too).
//
//go:noinline
func finStep(step int) {
	for i := 0; i < 200; i++ {
		r := &resource{id: step*1000 + i}
		runtime.SetFinalizer(r, closeResource)
		finSet++
		held[r] = r.id
		finOrder = append(finOrder, r)
	}
	for i := 0; i < 50 && len(finOrder) > 0; i++ {
		delete(held, finOrder[0])
		finOrder = finOrder[1:]
	}
	for i := 0; i < 100; i++ {
		t := &resource{id: -1}
		runtime.SetFinalizer(t, closeResource)
		finSet++
	}
}

// finStackStep calls SetFinalizer 200 times, each from a fresh goroutine
// (a small stack) at recursion depth 0..199, so that at some depths it is
// SetFinalizer's own stack check that finds the stack too small: the call
// grows the stack and restarts from its entry. The objects are not held:
// their finalizers run.
//
//go:noinline
func finStackStep() {
	for d := 0; d < 200; d++ {
		done := make(chan struct{})
		go func(d int) {
			finAtDepth(d)
			close(done)
		}(d)
		<-done
	}
}

var depthSink uint64

//go:noinline
func finAtDepth(d int) {
	if d > 0 {
		var pad [3]uint64
		pad[d%3] = uint64(d)
		finAtDepth(d - 1)
		depthSink += pad[0] + pad[1] + pad[2]
		return
	}
	t := &resource{id: -2}
	runtime.SetFinalizer(t, closeResource)
	finSet++
}

// node is a pointer key that gets deleted.
type node struct {
	id   int
	next *node
}

var nodes = map[*node]int{}

// ptrdelStep inserts 1000 nodes and deletes 900 of them again: 100 stay.
//
//go:noinline
func ptrdelStep(step int) {
	fresh := make([]*node, 0, 1000)
	for i := 0; i < 1000; i++ {
		n := &node{id: step*1000 + i}
		nodes[n] = n.id
		fresh = append(fresh, n)
	}
	for _, n := range fresh[100:] {
		delete(nodes, n)
	}
}

// tenantFill is the entries a tenant's map starts with: past the growth to
// 128 slots in both map implementations (hmap: 16 buckets at the 53rd
// entry; Swiss: a 128-slot table at the 57th), which a tracer sees, and
// short of the next one (hmap: 105; Swiss: 113).
const tenantFill = 60

var tenants, fixedTenants []map[int32]int32

//go:noinline
func newTenant(id int) map[int32]int32 {
	m := make(map[int32]int32)
	for i := 0; i < tenantFill; i++ {
		m[int32(i)] = int32(id)
	}
	return m
}

//go:noinline
func newFixedTenant(id int) map[int32]int32 {
	m := make(map[int32]int32)
	for i := 0; i < tenantFill; i++ {
		m[int32(i)] = int32(id)
	}
	return m
}

// tenantsStep makes the n tenants at step 0; from step 1 on, one tenant in
// twenty gains an entry (each every twentieth step: no tenant rises twice
// in a verdict's window of 8 samples, even when the tracer samples every
// other cycle), so that the total grows every step by n/20. Returns the
// total entries.
//
//go:noinline
func tenantsStep(step, n int) int {
	if step == 0 {
		// Built within one GC cycle (the collector off meanwhile), so that
		// the family's history is the steady growth the test checks, not
		// a build that spans as many cycles as the machine is slow.
		gc := debug.SetGCPercent(-1)
		tenants = make([]map[int32]int32, 0, n)
		for i := 0; i < n; i++ {
			tenants = append(tenants, newTenant(i))
		}
		debug.SetGCPercent(gc)
	} else {
		for i := step % 20; i < n; i += 20 {
			tenants[i][int32(1000+step)] = 1
		}
	}
	total := 0
	for _, m := range tenants {
		total += len(m)
	}
	return total
}

// fixedTenantsStep makes the n tenants at step 0; then one in five gains an
// entry at every fourth step (1, 5, 9, ...) and loses it two steps later: a
// bounded total. A period of four steps, not two: a tracer that samples
// every other cycle still sees the total go up and down (with a period of
// two it saw one level, and a level change when its phase shifted; CI of
// 2b87ebe called that growth). Returns the total entries.
//
//go:noinline
func fixedTenantsStep(step, n int) int {
	if step == 0 {
		gc := debug.SetGCPercent(-1)
		fixedTenants = make([]map[int32]int32, 0, n)
		for i := 0; i < n; i++ {
			fixedTenants = append(fixedTenants, newFixedTenant(i))
		}
		debug.SetGCPercent(gc)
	} else {
		for i := 0; i < n; i += 5 {
			switch step % 4 {
			case 1:
				fixedTenants[i][1000] = 1
			case 3:
				delete(fixedTenants[i], 1000)
			}
		}
	}
	total := 0
	for _, m := range fixedTenants {
		total += len(m)
	}
	return total
}
