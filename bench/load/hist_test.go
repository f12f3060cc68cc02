package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 255, 256, 257, 511, 512, 1000, 1 << 20, 1<<40 + 12345, 1<<62 + 1, 1<<63 - 1} {
		i := bucketOf(v)
		if i >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d, beyond %d buckets", v, i, numBuckets)
		}
		if i < prev {
			t.Fatalf("bucketOf(%d) = %d, below the previous %d", v, i, prev)
		}
		prev = i
		up := upperOf(i)
		if up < v {
			t.Fatalf("upperOf(bucketOf(%d)) = %d, below the value", v, up)
		}
		if i > 0 && upperOf(i-1) >= v {
			t.Fatalf("value %d also fits bucket %d (upper %d)", v, i-1, upperOf(i-1))
		}
		if float64(up-v) > float64(v)/subCount {
			t.Fatalf("bucket of %d is too wide: upper %d", v, up)
		}
	}
	// Every bucket's upper bound maps back to it, and the next value to
	// the next bucket.
	for i := 0; i < numBuckets-1; i++ {
		if bucketOf(upperOf(i)) != i || bucketOf(upperOf(i)+1) != i+1 {
			t.Fatalf("bucket %d: upper %d maps to %d, next to %d", i, upperOf(i), bucketOf(upperOf(i)), bucketOf(upperOf(i)+1))
		}
	}
}

func TestQuantiles(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var parts [4]hist
	var all []int64
	for i := range 100000 {
		v := int64(r.ExpFloat64() * float64(300*time.Microsecond))
		parts[i%4].record(time.Duration(v))
		all = append(all, v)
	}
	var h hist
	for i := range parts {
		h.merge(&parts[i])
	}
	slices.Sort(all)
	if h.n != uint64(len(all)) || h.min != all[0] || h.max != all[len(all)-1] {
		t.Fatalf("n %d min %d max %d, want %d %d %d", h.n, h.min, h.max, len(all), all[0], all[len(all)-1])
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		want := all[int(q*float64(len(all)))-1]
		got := int64(h.quantile(q))
		if got < want || float64(got-want) > float64(want)/subCount+1 {
			t.Errorf("quantile %v = %d, want %d within 1/%d", q, got, want, subCount)
		}
	}
}
