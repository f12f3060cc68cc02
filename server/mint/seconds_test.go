package mint

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// TestSecondText: the cached text is time.Format's for every second asked,
// from one goroutine or many sharing the cache, repeated or not.
func TestSecondText(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	secs := []int64{MinSecond, 0, 1796391606, MaxSecond}
	for range 2000 {
		secs = append(secs, r.Int64N(MaxSecond-MinSecond+1)+MinSecond)
	}
	var c SecondText
	for s, want := range map[int64]string{MinSecond: "0000-01-01T00:00:00", MaxSecond: "9999-12-31T23:59:59"} {
		if got := string(c.Append(nil, s)); got != want {
			t.Errorf("Append(%d) = %q, want %q: the range's bounds are wrong", s, got, want)
		}
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i, s := range secs {
				if i%4 != g && g != 0 {
					continue
				}
				for range 2 { // the second time from the cache
					want := time.Unix(s, 0).UTC().Format("2006-01-02T15:04:05")
					if got := string(c.Append([]byte("x"), s)); got != "x"+want {
						t.Errorf("Append(%d) = %q, want %q", s, got[1:], want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkSecondText(b *testing.B) {
	var c SecondText
	buf := make([]byte, 0, 32)
	s := time.Now().Unix()
	for b.Loop() {
		buf = c.Append(buf[:0], s)
	}
}
