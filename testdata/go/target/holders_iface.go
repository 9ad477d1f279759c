package main

// The ifaceheap scenario: a map behind a non-empty interface inside a heap
// object. The global rtr points to a router, whose field store is a Store
// (an interface with methods) holding a *memStore, whose field data is the
// map that grows. A tracer steps from the data word of the interface back
// to the router through the interface's itab (its dynamic type). Prints
// "holder ifaceheap <path>".

import (
	"fmt"
	"os"
	"reflect"
	"strings"
)

// Store is an interface with methods: a value of it is an itab and a data
// word.
type Store interface {
	Put(k string, v uint16)
	Len() int
}

type memStore struct {
	name string
	data map[string]uint16
}

func (s *memStore) Put(k string, v uint16) { s.data[k] = v }
func (s *memStore) Len() int               { return len(s.data) }

type router struct {
	prefix string
	store  Store
	hits   uint64
}

var rtr *router

//go:noinline
func newRouter() *router {
	return &router{prefix: "/api", store: &memStore{name: "mem", data: make(map[string]uint16)}}
}

// ifaceHeapStep adds n entries to rtr.store's map (making rtr at step 0)
// and returns its length.
//
//go:noinline
func ifaceHeapStep(step, n int) int {
	if rtr == nil {
		rtr = newRouter()
		fmt.Fprintln(os.Stderr, "holder ifaceheap", declaredIfaceHeapPath())
	}
	for i := 0; i < n; i++ {
		rtr.store.Put(fmt.Sprintf("route-%04d-%05d", step, i), uint16(i))
	}
	rtr.hits++
	return rtr.store.Len()
}

// declaredIfaceHeapPath is the holder path of rtr.store.(*memStore).data:
// the global, the interface field, its dynamic type, the map's field.
func declaredIfaceHeapPath() string {
	rt := reflect.TypeOf(rtr)
	storeField, _ := rt.Elem().FieldByName("store")
	dyn := reflect.TypeOf(rtr.store)
	dataField, _ := dyn.Elem().FieldByName("data")
	steps := []string{
		"main.rtr",
		fmt.Sprintf("(%v).%s", rt, storeField.Name),
		fmt.Sprintf(".(%v)", dyn),
		fmt.Sprintf("(%v).%s", dyn, dataField.Name),
	}
	return strings.Join(steps, " → ")
}
