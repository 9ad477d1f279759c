package main

// -mode=retainers: what the tracer's user-space searches cost. A live heap
// of pointer-linked retRecords (-heap-mib) for the holder search to go
// through, a growing map reached only through pointers and a struct field
// (retSrv → cache → items: a suspect no global holds directly, so its
// holder is searched), and a global sync.Map of -sync-entries entries
// (walked at every sample on Go 1.24+). It builds all that, then waits for
// "go" (with -wait), then grows the map and forces a GC cycle every
// -gc-every, printing "gc_cycles N" each time, for -seconds.

import (
	"flag"
	"fmt"
	"runtime"
	"sync"
	"time"
)

var (
	heapMiB     = flag.Int("heap-mib", 128, "retainers: MiB of live pointer-linked retRecords")
	syncEntries = flag.Int("sync-entries", 200000, "retainers: entries of the global sync.Map")
)

// retRecord is 64 bytes: a pointer and padding.
type retRecord struct {
	next *retRecord
	pad  [7]int64
}

type retCache struct {
	items map[int64][]byte
}

type retServer struct {
	name  string
	cache *retCache
}

var (
	// Chains of 64 retRecords, each held by its head here.
	retRecords []*retRecord
	retSrv     *retServer
	bigSync    sync.Map
)

func retainers() {
	start := time.Now()
	n := *heapMiB << 20 / 64
	retRecords = make([]*retRecord, 0, n/64+1)
	var head *retRecord
	for i := 0; i < n; i++ {
		head = &retRecord{next: head}
		if i%64 == 63 {
			retRecords = append(retRecords, head)
			head = nil
		}
	}
	for i := 0; i < *syncEntries; i++ {
		v := int64(i)
		bigSync.Store(fmt.Sprintf("key-%d", i), &v)
	}
	retSrv = &retServer{name: "srv", cache: &retCache{items: map[int64][]byte{}}}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("ready %d retRecords, %d sync.Map entries in %.3fs\n", n, *syncEntries, time.Since(start).Seconds())
	fmt.Printf("heap_inuse_bytes %d\n", ms.HeapInuse)
	waitForGo()
	deadline := time.Now().Add(dur())
	cycles := 0
	next := int64(0)
	for time.Now().Before(deadline) {
		for i := 0; i < 1000; i++ {
			retSrv.cache.items[next] = make([]byte, 16)
			next++
		}
		runtime.GC()
		cycles++
		fmt.Printf("gc_cycles %d\n", cycles)
		time.Sleep(*gcEvery)
	}
	runtime.KeepAlive(retRecords)
}
