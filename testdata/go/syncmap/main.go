// syncmap runs the sync.Map scenario of mapleak-trace, in lock-step so that
// every sync.Map's length is known at every forced GC cycle:
//
//	cache    a global sync.Map that only grows (first used after -wait:
//	         a tracer attached before sees its initSlow)
//	bounded  a global sync.Map kept at -bound entries under churn (filled
//	         before "ready": a tracer finds it among the globals)
//	finkeys  a global sync.Map whose keys are objects with finalizers: 50
//	         more each step, the 10 oldest deleted (their finalizers run
//	         then; the others never can while they are keys)
//
// With -wait it prints "ready" and waits for a line on stdin before the
// cache is first used. stderr carries "cycle N cache L bounded M" lines after
// each forced GC, with the entries each holds (sync.Map has no Len: the
// program counts its own stores and deletes), then "finkeys K".
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

var (
	cache   sync.Map
	bounded sync.Map
	finkeys sync.Map
)

// resource is an object with a finalizer (40 bytes: not a tiny allocation).
type resource struct {
	id  int
	buf [4]int64
}

//go:noinline
func closeResource(r *resource) {}

type entry struct {
	id   int
	data [4]int64
}

func main() {
	steps := flag.Int("steps", 10, "lock-steps to run")
	stepMs := flag.Int("step-ms", 250, "pause after each forced GC, in ms")
	perStep := flag.Int("per-step", 3000, "entries the cache gains per step")
	bound := flag.Int("bound", 500, "entries the bounded map holds")
	wait := flag.Bool("wait", false, "print ready and wait for a line on stdin")
	flag.Parse()

	// Filled before the tracer attaches.
	for i := 0; i < *bound; i++ {
		bounded.Store(i, &entry{id: i})
	}
	next := *bound
	if *wait {
		fmt.Fprintln(os.Stderr, "ready", os.Getpid())
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	cached := 0
	var finOrder []*resource
	for step := 0; step < *steps; step++ {
		for i := 0; i < 50; i++ {
			r := &resource{id: step*1000 + i}
			runtime.SetFinalizer(r, closeResource)
			finkeys.Store(r, i)
			finOrder = append(finOrder, r)
		}
		for i := 0; i < 10; i++ {
			finkeys.Delete(finOrder[0])
			finOrder = finOrder[1:]
		}
		for i := 0; i < *perStep; i++ {
			k := fmt.Sprintf("key-%d", cached)
			cache.Store(k, &entry{id: cached})
			cached++
		}
		// Churn: as many new keys as old ones deleted.
		for i := 0; i < *bound/2; i++ {
			bounded.Delete(next - *bound)
			bounded.Store(next, &entry{id: next})
			next++
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(os.Stderr, "cycle %d cache %d bounded %d finkeys %d\n", ms.NumGC, cached, *bound, len(finOrder))
		time.Sleep(time.Duration(*stepMs) * time.Millisecond)
	}
	fmt.Println("done", cached)
}
