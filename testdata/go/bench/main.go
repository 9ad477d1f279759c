// bench is the workload of `cargo xtask bench`: one program, several modes.
//
//	-mode=mapwrite -seconds S   writes to 16 map[int64]int64 of 256 keys in a
//	                            loop (runtime.mapassign_fast64, no growth, no
//	                            allocation) and prints "ops_per_sec N"
//	-mode=mapwrite -ops N       exactly N writes to one map of 4096 keys;
//	                            prints "elapsed_s X" (per-hit microbenchmark)
//	-mode=makemap -ops N        creates N maps kept in a global (so heap-
//	                            allocated): with -hint 0 `make(map[int64]int64)`
//	                            (runtime.makemap_small), else with that hint
//	                            (runtime.makemap); -par G splits the work
//	                            between G goroutines; prints "elapsed_s X"
//	-mode=http -seconds S       a loopback HTTP server on 127.0.0.1:0 and
//	                            -clients keep-alive clients for S seconds; the
//	                            handler writes a bounded per-path counter map;
//	                            prints "req_per_sec N"; with -json the clients
//	                            POST JSON documents (objects of 10 to 50 keys,
//	                            nested objects) that the handler decodes into
//	                            map[string]any, and one map planted in a global
//	                            grows by an entry every 100 requests
//	-mode=manymaps -n N         creates N live map[int32]int32, each grown past
//	                            128 entries (150), prints "ready", then runs a
//	                            GC cycle every -gc-every for S seconds
//	-mode=retainers             a live heap, a map held through pointers and a
//	                            big sync.Map: what the holder search and the
//	                            trie walks cost (retainers.go)
//
// The workloads of the alternating phases (`-tick`, suite.go): -mode=http
// with -json or -words N, -mode=mapwrite -tick, and the modes gcheavy,
// creators and livemaps. -plant N or -plant-period D grow a map planted in
// a global (the leak the tracer must report whatever else the program does).
//
// With -wait it prints "waiting" and blocks until a line arrives on stdin
// before the measured part, so that a tracer can attach first. Every mode is
// bounded in time (the measured part) and only listens on loopback. Written
// for Go 1.18+ (the fixture matrix builds it with Go 1.19 too).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

var (
	mode    = flag.String("mode", "mapwrite", "mapwrite | makemap | http | manymaps | gcheavy | creators | livemaps | retainers")
	seconds = flag.Float64("seconds", 3, "length of the measured part, in seconds")
	ops     = flag.Int64("ops", 0, "mapwrite: run exactly this many writes instead of -seconds")
	n       = flag.Int("n", 100000, "manymaps: number of live maps")
	entries = flag.Int("entries", 150, "manymaps: entries per map")
	gcEvery = flag.Duration("gc-every", 200*time.Millisecond, "manymaps: interval between forced GC cycles")
	hint    = flag.Int("hint", 0, "makemap: size hint")
	par     = flag.Int("par", 1, "makemap: goroutines creating maps at once (-ops split between them)")
	clients = flag.Int("clients", 4, "http: client goroutines")
	tick    = flag.Duration("tick", 0, "print \"tick UNIX_NS OPS GC\" every interval (ops done in it, GC cycles so far)")
	jsonReq = flag.Bool("json", false, "http: POST JSON documents decoded into map[string]any")
	wait    = flag.Bool("wait", false, "print \"waiting\" and wait for a line on stdin before measuring")
)

func main() {
	flag.Parse()
	var err error
	switch *mode {
	case "mapwrite":
		mapwrite()
	case "makemap":
		makemaps()
	case "http":
		err = serveHTTP()
	case "manymaps":
		manymaps()
	case "gcheavy":
		gcheavy()
	case "creators":
		creators()
	case "livemaps":
		livemaps()
	case "retainers":
		retainers()
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func waitForGo() {
	if !*wait {
		return
	}
	fmt.Println("waiting")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

func dur() time.Duration {
	return time.Duration(*seconds * float64(time.Second))
}

var sink int64

func mapwrite() {
	if *ops > 0 {
		mapwriteOps(*ops)
		return
	}
	if *tick > 0 {
		mapwriteTicking()
		return
	}
	// Throughput mode: 16 full maps of 256 keys, written in turn. Several
	// maps average out the run-to-run variation that the layout of a
	// single map (its per-map hash seed, its address) causes.
	ms := make([]map[int64]int64, 16)
	for j := range ms {
		ms[j] = make(map[int64]int64, 256)
		for i := int64(0); i < 256; i++ {
			ms[j][i] = i
		}
	}
	waitForGo()
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
		if time.Now().After(deadline) {
			break
		}
	}
	report(done, time.Since(start).Seconds())
	sink = ms[3][7]
}

// mapwriteOps makes exactly n runtime.mapassign_fast64 calls, all in the
// timed loop (no prefill: the size hint avoids any growth).
func mapwriteOps(n int64) {
	m := make(map[int64]int64, 4096)
	waitForGo()
	start := time.Now()
	for i := int64(0); i < n; i++ {
		m[i&4095] = i
	}
	report(n, time.Since(start).Seconds())
	sink = m[7]
}

func report(done int64, el float64) {
	fmt.Printf("ops %d\n", done)
	fmt.Printf("elapsed_s %.6f\n", el)
	fmt.Printf("ops_per_sec %.0f\n", float64(done)/el)
}

var mapSink map[int64]int64

func makemaps() {
	n := *ops
	if n <= 0 {
		n = 100000
	}
	waitForGo()
	h := *hint
	p := *par
	if p < 1 {
		p = 1
	}
	// One sink per goroutine, on separate cache lines.
	sinks := make([]map[int64]int64, p*8)
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < p; g++ {
		wg.Add(1)
		go func(sink *map[int64]int64, n int64) {
			defer wg.Done()
			if h == 0 {
				// Constant (no) hint: the compiler calls runtime.makemap_small.
				for i := int64(0); i < n; i++ {
					*sink = make(map[int64]int64)
				}
			} else {
				for i := int64(0); i < n; i++ {
					*sink = make(map[int64]int64, h)
				}
			}
		}(&sinks[g*8], n/int64(p))
	}
	wg.Wait()
	mapSink = sinks[0]
	report(n, time.Since(start).Seconds())
}

const paths = 64

type counter struct {
	mu   sync.Mutex
	hits map[string]int64
}

// planted grows slowly for as long as the workload runs (plantOp,
// startPlanter): the leak the tracer must report whatever else the program
// does.
var (
	plantedMu sync.Mutex
	planted   = map[int64][64]byte{}
	served    int64
)

// plantOp counts one operation and grows the planted map every -plant
// operations (every 100 requests with -json when -plant is not given).
func plantOp(b int) {
	every := *plantEvery
	if every <= 0 {
		if !*jsonReq {
			return
		}
		every = 100
	}
	if n := atomic.AddInt64(&served, 1); n%every == 0 {
		plantedMu.Lock()
		planted[n] = [64]byte{byte(b)}
		plantedMu.Unlock()
	}
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	keys := 0
	reply := "ok"
	if r.Method == http.MethodPost && *jsonReq {
		var doc map[string]any
		if err := json.NewDecoder(r.Body).Decode(&doc); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		keys = len(doc)
	} else if r.Method == http.MethodPost {
		n, top, err := countWords(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		keys, reply = n, top
	}
	plantOp(keys)
	c.mu.Lock()
	// Bounded: at most `paths` keys.
	c.hits[r.URL.Path] += int64(1 + keys)
	c.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, reply+"\n")
}

func serveHTTP() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: &counter{hits: make(map[string]int64)}}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/p/"
	tr := &http.Transport{MaxIdleConnsPerHost: *clients, MaxIdleConns: *clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	var docs [][]byte
	if *jsonReq {
		docs = jsonDocs(64)
	} else if *words > 0 {
		docs = wordDocs(*words, 64)
	}
	get := func(path string) error {
		var resp *http.Response
		var err error
		if docs != nil {
			body := docs[len(path)*7%len(docs)]
			if i, e := strconv.Atoi(path[len(url):]); e == nil {
				body = docs[i%len(docs)]
			}
			ct := "application/json"
			if !*jsonReq {
				ct = "text/plain"
			}
			resp, err = client.Post(path, ct, bytes.NewReader(body))
		} else {
			resp, err = client.Get(path)
		}
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	if err := get(url + "warmup"); err != nil {
		return err
	}
	waitForGo()
	var total, failed int64
	var stop int32
	var wg sync.WaitGroup
	start := time.Now()
	stopTicks := ticks(&total)
	defer stopTicks()
	defer startPlanter()()
	for c := 0; c < *clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := c; atomic.LoadInt32(&stop) == 0; i++ {
				if get(url+strconv.Itoa(i%paths)) != nil {
					atomic.AddInt64(&failed, 1)
					continue
				}
				atomic.AddInt64(&total, 1)
			}
		}(c)
	}
	time.Sleep(dur())
	atomic.StoreInt32(&stop, 1)
	el := time.Since(start).Seconds()
	wg.Wait()
	done := atomic.LoadInt64(&total)
	fmt.Printf("requests %d\n", done)
	fmt.Printf("failed %d\n", atomic.LoadInt64(&failed))
	fmt.Printf("elapsed_s %.6f\n", el)
	fmt.Printf("req_per_sec %.0f\n", float64(done)/el)
	return nil
}

// jsonDocs returns n request bodies: objects of 10 to 50 keys whose values
// are strings, numbers, booleans, arrays and nested objects of 10 to 20 keys
// (what an API decoding into map[string]any sees).
func jsonDocs(n int) [][]byte {
	docs := make([][]byte, n)
	for i := range docs {
		doc := map[string]any{}
		for k := 0; k < 10+i*41/n; k++ {
			key := fmt.Sprintf("field_%d_%d", i, k)
			switch k % 5 {
			case 0:
				doc[key] = fmt.Sprintf("value %d of document %d", k, i)
			case 1:
				doc[key] = float64(k * i)
			case 2:
				doc[key] = k%2 == 0
			case 3:
				doc[key] = []any{"a", float64(k), map[string]any{"x": 1.0, "y": "z"}}
			case 4:
				nested := map[string]any{}
				for j := 0; j < 10+(i+k)%11; j++ {
					nested[fmt.Sprintf("n%d", j)] = float64(j)
				}
				doc[key] = nested
			}
		}
		b, err := json.Marshal(doc)
		if err != nil {
			panic(err)
		}
		docs[i] = b
	}
	return docs
}

// ticks prints, every -tick, how many operations the counter advanced by
// in that interval and the GC cycles completed so far, until the returned
// function is called.
func ticks(counter *int64) func() {
	if *tick <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(*tick)
		defer t.Stop()
		last := atomic.LoadInt64(counter)
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				cur := atomic.LoadInt64(counter)
				fmt.Printf("tick %d %d %d\n", now.UnixNano(), cur-last, gcCycles())
				last = cur
			}
		}
	}()
	return func() { close(done) }
}

var live []map[int32]int32

//go:noinline
func newGrownMap(seed int32, k int) map[int32]int32 {
	m := make(map[int32]int32)
	for i := 0; i < k; i++ {
		m[seed+int32(i)] = int32(i)
	}
	return m
}

func manymaps() {
	waitForGo()
	start := time.Now()
	live = make([]map[int32]int32, 0, *n)
	for i := 0; i < *n; i++ {
		live = append(live, newGrownMap(int32(i), *entries))
	}
	fmt.Printf("ready %d maps in %.3fs\n", len(live), time.Since(start).Seconds())
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("heap_inuse_bytes %d\n", ms.HeapInuse)
	deadline := time.Now().Add(dur())
	cycles := 0
	for time.Now().Before(deadline) {
		runtime.GC()
		cycles++
		// One line per cycle: the count is known even if the bench
		// stops this process early.
		fmt.Printf("gc_cycles %d\n", cycles)
		time.Sleep(*gcEvery)
	}
	runtime.KeepAlive(live)
}
