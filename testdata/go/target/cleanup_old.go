//go:build !go1.24

package main

import "sync/atomic"

// Before Go 1.24 there is no runtime.AddCleanup: the scenario is skipped.
const cleanupsSupported = false

var (
	handles  = map[int]int{}
	cleanRan atomic.Int64
)

func cleanupStep(step int) {}
