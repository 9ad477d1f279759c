//go:build !go1.21

package main

func extra() int {
	for k := range byInt32 {
		delete(byInt32, k)
	}
	return 0
}
