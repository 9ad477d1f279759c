// keyzoo holds maps with deterministic keys, for the tests of the key
// snapshots (tracer-user/src/keys). It fills every map, prints one line per
// map and the pointer keys, then "ready", and blocks until stdin closes.
//
// Output, one line each:
//
//	map <name> <map header address> <map type descriptor address> <len>
//	ptr <name> <pointer key>           (for each key of a pointer-keyed map)
//	ready
//
// The header address is what `fmt.Printf("%p", m)` prints for a map. The type
// descriptor address is the type word of an `interface{}` holding the map:
// an empty interface is the pair {*type, data}, so `(*[2]uintptr)(&e)[0]` is
// the map type descriptor the runtime passes to mapassign (the tracer gets
// the same pointer from its probes).
//
// Flags:
//
//	-big N   also build "big" (map[string]int with N keys "k%07d")
//	-churn   also run a goroutine that mutates "churn" (map[int64]int) forever:
//	         bursts of inserts and deletes over a sliding window of keys in
//	         [0, 1<<20), about 1000 keys live, with short pauses.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unsafe"
)

// T is the pointee of the pointer-keyed map.
type T struct {
	ID   int
	Name string
}

// Big is a key type over 128 bytes: the map stores pointers to keys.
type Big struct {
	ID   int64
	Name string
	Pad  [18]int64
}

var (
	strs    map[string]int
	ints    map[int64]string
	ptrs    map[*T]int
	structs map[struct {
		A int32
		S string
	}]bool
	bigKeys  map[Big]int
	arrays   map[[3]uint16]int
	floats   map[float64]int
	strange  map[string]int
	small    map[string]int
	empty    map[string]int
	midgrow  map[int64]int
	big      map[string]int
	churn    map[int64]int
	pointees []*T
)

func typeWord(m interface{}) uintptr {
	return (*[2]uintptr)(unsafe.Pointer(&m))[0]
}

func show(name string, m interface{}, p string, n int) {
	fmt.Printf("map %s %s %#x %d\n", name, p, typeWord(m), n)
}

//go:noinline
func fill(bigN int) {
	strs = make(map[string]int)
	for i := 0; i < 5000; i++ {
		strs[fmt.Sprintf("key-%05d", i)] = i
	}
	ints = make(map[int64]string)
	for i := 0; i < 1000; i++ {
		ints[int64(i-500)*1000003] = "v"
	}
	ptrs = make(map[*T]int)
	for i := 0; i < 100; i++ {
		t := &T{ID: i, Name: fmt.Sprintf("t%d", i)}
		pointees = append(pointees, t)
		ptrs[t] = i
	}
	structs = make(map[struct {
		A int32
		S string
	}]bool)
	for i := 0; i < 500; i++ {
		structs[struct {
			A int32
			S string
		}{int32(i), fmt.Sprintf("s-%d", i)}] = true
	}
	bigKeys = make(map[Big]int)
	for i := 0; i < 200; i++ {
		k := Big{ID: int64(i), Name: fmt.Sprintf("big-%d", i)}
		for j := range k.Pad {
			k.Pad[j] = int64(i + j)
		}
		bigKeys[k] = i
	}
	arrays = make(map[[3]uint16]int)
	for i := 0; i < 64; i++ {
		arrays[[3]uint16{uint16(i), uint16(2 * i), uint16(65535 - i)}] = i
	}
	floats = map[float64]int{-1.5: 1, 0.25: 2, 3: 3}
	strange = map[string]int{
		"":                       0,
		"q\"uote":                1,
		"tab\t":                  2,
		"é✓":                     3,
		"\xff":                   4,
		strings.Repeat("L", 300): 5,
	}
	small = map[string]int{}
	small["a"] = 1
	small["bb"] = 2
	small["ccc"] = 3
	empty = make(map[string]int)
	// The old map grows from 2^5 to 2^6 buckets on the insert that takes it
	// past 6.5 keys per bucket (the 209th); each later write would move one
	// or two old buckets, so with no later write the map stays mid-grow.
	// Swiss maps have no incremental growth: there this is a plain map.
	midgrow = make(map[int64]int)
	for i := 0; i < 209; i++ {
		midgrow[int64(i)*3] = i
	}
	if bigN > 0 {
		big = make(map[string]int)
		for i := 0; i < bigN; i++ {
			big[fmt.Sprintf("k%07d", i)] = i
		}
	}
}

func churnForever(m map[int64]int) {
	const window = 1000
	const space = 1 << 20
	i := int64(window)
	for {
		for j := 0; j < 5000; j++ {
			m[i%space] = int(i)
			delete(m, (i-window)%space)
			i++
		}
		time.Sleep(500 * time.Microsecond)
	}
}

func main() {
	bigN := flag.Int("big", 0, "keys in the \"big\" map (0: no such map)")
	doChurn := flag.Bool("churn", false, "mutate the \"churn\" map forever")
	flag.Parse()
	fill(*bigN)
	show("strs", strs, fmt.Sprintf("%p", strs), len(strs))
	show("ints", ints, fmt.Sprintf("%p", ints), len(ints))
	show("ptrs", ptrs, fmt.Sprintf("%p", ptrs), len(ptrs))
	for _, t := range pointees {
		fmt.Printf("ptr ptrs %p\n", t)
	}
	show("structs", structs, fmt.Sprintf("%p", structs), len(structs))
	show("bigkeys", bigKeys, fmt.Sprintf("%p", bigKeys), len(bigKeys))
	show("arrays", arrays, fmt.Sprintf("%p", arrays), len(arrays))
	show("floats", floats, fmt.Sprintf("%p", floats), len(floats))
	show("strange", strange, fmt.Sprintf("%p", strange), len(strange))
	show("small", small, fmt.Sprintf("%p", small), len(small))
	show("empty", empty, fmt.Sprintf("%p", empty), len(empty))
	show("midgrow", midgrow, fmt.Sprintf("%p", midgrow), len(midgrow))
	if big != nil {
		show("big", big, fmt.Sprintf("%p", big), len(big))
	}
	if *doChurn {
		churn = make(map[int64]int)
		for i := int64(0); i < 1000; i++ {
			churn[i] = int(i)
		}
		show("churn", churn, fmt.Sprintf("%p", churn), len(churn))
		go churnForever(churn)
	}
	fmt.Println("ready")
	// Exit when stdin closes (the test's guard closes it or kills us).
	io.Copy(io.Discard, bufio.NewReader(os.Stdin))
	// Keep every map and pointee reachable until the end.
	if len(strs)+len(ints)+len(ptrs)+len(structs)+len(bigKeys)+len(arrays)+len(floats)+
		len(strange)+len(small)+len(empty)+len(midgrow)+len(big)+len(pointees) < 0 {
		fmt.Println("unreachable")
	}
}
