package main

// ballastNode is 64 bytes with one pointer, to another node: a heap of
// linked objects, as a service's caches and buffers make one, for holder
// searches over a heap far larger than the objects they look for.
type ballastNode struct {
	next *ballastNode
	pad  [7]uint64
}

// ballast keeps the nodes alive: chains of 1,024.
var ballast []*ballastNode

// makeBallast allocates mib MiB of ballastNodes.
func makeBallast(mib int) []*ballastNode {
	n := mib << 20 / 64
	heads := make([]*ballastNode, 0, n/1024+1)
	var prev *ballastNode
	for i := 0; i < n; i++ {
		prev = &ballastNode{next: prev, pad: [7]uint64{uint64(i)}}
		if i%1024 == 1023 {
			heads = append(heads, prev)
			prev = nil
		}
	}
	if prev != nil {
		heads = append(heads, prev)
	}
	return heads
}
