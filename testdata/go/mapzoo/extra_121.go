//go:build go1.21 && !go1.24

package main

import "maps"

func extra() int {
	c := maps.Clone(byInt64)
	clear(byInt32)
	return len(c)
}
