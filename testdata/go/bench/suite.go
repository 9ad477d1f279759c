package main

// The workloads of the alternating-phases suite (`cargo xtask bench --only
// phases --workload suite`): each runs until killed (or -seconds), prints
// "tick UNIX_NS OPS GC" every -tick, and grows the planted map.
//
//	-mode=http -words N          clients POST texts of N distinct words (each
//	                             1 to 3 times); the handler counts them into
//	                             a fresh map[string]int and replies with the
//	                             most frequent one (ops: requests)
//	-mode=mapwrite -tick D       the mapwrite loop, counted in writes, with a
//	                             little garbage on the side (a GC pace: the
//	                             loop itself allocates nothing)
//	-mode=gcheavy                -gc-percent (default 10) and a small live heap
//	                             (-live-kb): every worker builds short-lived
//	                             chains of 4 records, 100+ GC cycles a second
//	                             (ops: chains)
//	-mode=creators               one goroutine per P creating maps of 1 to 200
//	                             keys without a size hint, then dropping them
//	                             (ops: maps)
//	-mode=livemaps -n N          N live map[int32]int32 of -entries, built
//	                             before "waiting"; one worker per P updates
//	                             random ones and builds a small reply per
//	                             update (ops: updates)

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"time"
)

var (
	plantEvery  = flag.Int64("plant", 0, "grow the planted map by an entry every N operations (0: never; -json alone implies 100)")
	plantPeriod = flag.Duration("plant-period", 0, "grow the planted map by an entry every period, from a goroutine of its own")
	words       = flag.Int("words", 0, "http: POST texts of this many distinct words, counted per request into a map[string]int")
	gcPercent   = flag.Int("gc-percent", 10, "gcheavy: GOGC")
	liveKB      = flag.Int("live-kb", 6144, "gcheavy: live heap kept, in KiB")
)

// gcSample reads the GC cycle count without stopping the world (only the
// tick goroutine uses it).
var gcSample = []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}

func gcCycles() uint64 {
	metrics.Read(gcSample)
	if gcSample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return gcSample[0].Value.Uint64()
}

// startPlanter grows the planted map every -plant-period until the returned
// function is called.
func startPlanter() func() {
	if *plantPeriod <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(*plantPeriod)
		defer t.Stop()
		var n int64
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n++
				plantedMu.Lock()
				planted[n] = [64]byte{byte(n)}
				plantedMu.Unlock()
			}
		}
	}()
	return func() { close(done) }
}

// countWords counts the words of a request body into a fresh map, as a text
// indexing service would: the number of distinct words and the most
// frequent one.
func countWords(r io.Reader) (int, string, error) {
	counts := make(map[string]int)
	sc := bufio.NewScanner(r)
	sc.Split(bufio.ScanWords)
	for sc.Scan() {
		counts[sc.Text()]++
	}
	if err := sc.Err(); err != nil {
		return 0, "", err
	}
	top, best := "", 0
	for w, c := range counts {
		if c > best || (c == best && w < top) {
			top, best = w, c
		}
	}
	return len(counts), top, nil
}

// wordDocs returns n texts of `distinct` distinct words each, word k
// appearing 1 + k%3 times, in a shuffled order.
func wordDocs(distinct, n int) [][]byte {
	rng := rand.New(rand.NewSource(1))
	const letters = "abcdefghijklmnopqrstuvwxyz"
	docs := make([][]byte, n)
	for i := range docs {
		var toks []string
		for k := 0; k < distinct; k++ {
			var b strings.Builder
			for j := 0; j < 4+rng.Intn(6); j++ {
				b.WriteByte(letters[rng.Intn(len(letters))])
			}
			// Distinct whatever the letters drawn.
			w := fmt.Sprintf("%s%d", b.String(), k)
			for c := 0; c <= k%3; c++ {
				toks = append(toks, w)
			}
		}
		rng.Shuffle(len(toks), func(a, b int) { toks[a], toks[b] = toks[b], toks[a] })
		docs[i] = []byte(strings.Join(toks, " "))
	}
	return docs
}

// runWorkers runs work on one goroutine per P until -seconds have passed,
// ticking the ops they add to total, with the planter running; then prints
// the totals.
func runWorkers(total *int64, work func(g int, stop *int32)) {
	waitForGo()
	p := runtime.GOMAXPROCS(0)
	var stop int32
	done := make(chan struct{}, p)
	start := time.Now()
	stopTicks := ticks(total)
	stopPlanter := startPlanter()
	for g := 0; g < p; g++ {
		go func(g int) {
			work(g, &stop)
			done <- struct{}{}
		}(g)
	}
	time.Sleep(dur())
	atomic.StoreInt32(&stop, 1)
	for g := 0; g < p; g++ {
		<-done
	}
	stopPlanter()
	stopTicks()
	report(atomic.LoadInt64(total), time.Since(start).Seconds())
	fmt.Printf("gc_cycles %d\n", gcCycles())
}

// mapwriteTicking is mapwrite's loop (16 full maps of 256 keys written in
// turn, no growth, no allocation), its writes ticked, while another
// goroutine allocates 16 MB/s of garbage, so that GC cycles (when the
// tracer samples map lengths) come a few times a second.
func mapwriteTicking() {
	ms := make([]map[int64]int64, 16)
	for j := range ms {
		ms[j] = make(map[int64]int64, 256)
		for i := int64(0); i < 256; i++ {
			ms[j][i] = i
		}
	}
	waitForGo()
	var total int64
	var stop int32
	stopTicks := ticks(&total)
	stopPlanter := startPlanter()
	go func() {
		t := time.NewTicker(4 * time.Millisecond)
		defer t.Stop()
		for atomic.LoadInt32(&stop) == 0 {
			<-t.C
			garbage = make([]byte, 64<<10)
		}
	}()
	start := time.Now()
	deadline := start.Add(dur())
	var done int64
	for {
		for _, m := range ms {
			for i := int64(0); i < 256; i++ {
				m[i] = done + i
			}
		}
		done += 4096
		atomic.AddInt64(&total, 4096)
		if time.Now().After(deadline) {
			break
		}
	}
	atomic.StoreInt32(&stop, 1)
	stopPlanter()
	stopTicks()
	report(done, time.Since(start).Seconds())
	sink = ms[3][7]
}

var garbage []byte

type record struct {
	id    int64
	name  string
	tags  []string
	attrs [4]int64
	next  *record
}

// gcheavy keeps -live-kb of records live (a ring, one slot replaced per op)
// and builds a short chain of records per op, with GOGC at -gc-percent: the
// heap goal is a few hundred KiB above the live heap, so the GC runs
// continually.
func gcheavy() {
	debug.SetGCPercent(*gcPercent)
	p := runtime.GOMAXPROCS(0)
	// A chain of 4 records and their strings takes about 800 bytes.
	per := *liveKB * 1024 / 800 / p
	if per < 1 {
		per = 1
	}
	rings := make([][]*record, p)
	for g := range rings {
		rings[g] = make([]*record, per)
		for i := range rings[g] {
			rings[g][i] = newChain(int64(i))
		}
	}
	var total int64
	runWorkers(&total, func(g int, stop *int32) {
		ring := rings[g]
		var local int64
		for i := int64(g); atomic.LoadInt32(stop) == 0; i++ {
			ring[i%int64(len(ring))] = newChain(i)
			if local++; local&63 == 0 {
				atomic.AddInt64(&total, 64)
			}
		}
	})
	runtime.KeepAlive(rings)
}

func newChain(id int64) *record {
	var head *record
	for k := int64(0); k < 4; k++ {
		head = newRecord(id+k, head)
	}
	return head
}

//go:noinline
func newRecord(id int64, next *record) *record {
	return &record{
		id:    id,
		name:  "record-" + strconv64(id),
		tags:  []string{"a", "b", strconv64(id % 97)},
		attrs: [4]int64{id, id * 2, id * 3, id * 4},
		next:  next,
	}
}

func strconv64(x int64) string {
	var buf [20]byte
	i := len(buf)
	if x < 0 {
		x = -x
	}
	for {
		i--
		buf[i] = byte('0' + x%10)
		x /= 10
		if x == 0 {
			break
		}
	}
	return string(buf[i:])
}

// creatorSinks keeps each goroutine's latest map (one per cache line), so
// maps are heap-allocated and dropped at the next one.
var creatorSinks []map[int64]int64

// creators runs one goroutine per P, each creating maps of 1 to 200 keys
// (no size hint: they grow as they fill) and dropping them.
func creators() {
	creatorSinks = make([]map[int64]int64, runtime.GOMAXPROCS(0)*8)
	var total int64
	runWorkers(&total, func(g int, stop *int32) {
		x := uint32(g)*2654435761 + 1
		var local int64
		for atomic.LoadInt32(stop) == 0 {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			size := 1 + int(x%200)
			m := make(map[int64]int64)
			base := int64(x)
			for i := 0; i < size; i++ {
				m[base+int64(i)*7919] = int64(i)
			}
			creatorSinks[g*8] = m
			if local++; local&15 == 0 {
				atomic.AddInt64(&total, 16)
			}
		}
	})
}

var liveReplies [][]byte

// livemaps builds -n live maps of -entries (like -mode=manymaps) before
// "waiting", then one worker per P updates random maps of its own share
// (8 existing keys each, no growth) and builds a 1 KiB reply per update
// (its garbage paces the GC).
func livemaps() {
	start := time.Now()
	live = make([]map[int32]int32, 0, *n)
	for i := 0; i < *n; i++ {
		live = append(live, newGrownMap(int32(i), *entries))
	}
	fmt.Printf("ready %d maps in %.3fs\n", len(live), time.Since(start).Seconds())
	p := runtime.GOMAXPROCS(0)
	liveReplies = make([][]byte, p*8)
	var total int64
	runWorkers(&total, func(g int, stop *int32) {
		x := uint32(g)*2654435761 + 1
		var local int64
		for atomic.LoadInt32(stop) == 0 {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			// Maps g, g+p, g+2p...: no two workers write one map.
			i := int(x%uint32(len(live)/p))*p + g
			m := live[i]
			k := int32(x>>8) % int32(*entries)
			for j := int32(0); j < 8; j++ {
				m[int32(i)+(k+j)%int32(*entries)] += 1
			}
			liveReplies[g*8] = make([]byte, 1024)
			if local++; local&15 == 0 {
				atomic.AddInt64(&total, 16)
			}
		}
	})
	runtime.KeepAlive(live)
}
