package main

import (
	"math"
	"math/bits"
	"time"
)

// hist is a log-bucketed latency histogram in the HDR style: values (in
// nanoseconds) below 256 are counted exactly, larger ones in buckets of
// 128 per power of two, so any recorded value is reported within 1/128
// (0.8%) of itself. Recording is a few instructions and never allocates;
// each load worker owns one, and they are merged after the run.
type hist struct {
	counts   [numBuckets]uint64
	n        uint64
	min, max int64
}

const (
	subBits    = 7
	subCount   = 1 << subBits // buckets per power of two
	numBuckets = 2*subCount + (63-subBits-1)*subCount
)

// bucketOf is the index of v's bucket (v >= 0).
func bucketOf(v int64) int {
	if v < 2*subCount {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - (subBits + 1) // v>>e is in [128, 256)
	return 2*subCount + (e-1)*subCount + int(uint64(v)>>e) - subCount
}

// upperOf is the largest value bucket i holds.
func upperOf(i int) int64 {
	if i < 2*subCount {
		return int64(i)
	}
	j := i - 2*subCount
	e := j/subCount + 1
	m := j%subCount + subCount
	return int64(uint64(m+1)<<e - 1)
}

func (h *hist) record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.counts[bucketOf(v)]++
	h.n++
}

// recordN records d n times (a value of another histogram, such as wrk's).
func (h *hist) recordN(d time.Duration, n uint64) {
	if n == 0 {
		return
	}
	v := int64(d)
	if v < 0 {
		v = 0
	}
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.counts[bucketOf(v)] += n
	h.n += n
}

func (h *hist) merge(o *hist) {
	if o.n == 0 {
		return
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile is the value at quantile q (0 < q <= 1): the upper bound of the
// bucket holding the ceil(q*n)-th smallest value, capped at the maximum.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(1, min(rank, h.n))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(upperOf(i), h.max))
		}
	}
	return time.Duration(h.max)
}
