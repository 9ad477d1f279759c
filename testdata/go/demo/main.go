// demo is a small "service" with a classic Go map leak: a session store that
// adds a session per request and never expires any, next to a healthy,
// bounded per-route counter. mapleak-trace's demo points the tracer at it.
package main

import (
	"fmt"
	"os"
	"runtime"
	"time"
)

type Session struct {
	Token   string
	UserID  int
	Created time.Time
	Scratch [8]int64
}

// sessionsByToken holds every session ever created.
var sessionsByToken map[string]*Session

//go:noinline
func NewSessionStore() map[string]*Session {
	return make(map[string]*Session)
}

// Login stores a session. Nothing ever removes one: that is the leak.
func Login(user int, now time.Time) {
	tok := fmt.Sprintf("sess-%d-%d", user, now.UnixNano())
	sessionsByToken[tok] = &Session{Token: tok, UserID: user, Created: now}
}

var routeHits = map[string]int{}

func main() {
	fmt.Printf("demo: pid %d handling fake requests (leaks sessions, ~4000/s)\n", os.Getpid())
	time.Sleep(2 * time.Second) // "loading configuration"
	sessionsByToken = NewSessionStore()
	routes := []string{"/", "/login", "/api/items", "/api/cart", "/health"}
	deadline := time.Time{}
	if len(os.Args) > 1 {
		if d, err := time.ParseDuration(os.Args[1]); err == nil {
			deadline = time.Now().Add(d)
		}
	}
	for i := 0; ; i++ {
		now := time.Now()
		if !deadline.IsZero() && now.After(deadline) {
			break
		}
		Login(i, now)
		routeHits[routes[i%len(routes)]]++
		if i%400 == 0 {
			time.Sleep(100 * time.Millisecond)
		}
		if i%20000 == 0 {
			runtime.GC()
		}
	}
	fmt.Println("demo: sessions", len(sessionsByToken))
}
