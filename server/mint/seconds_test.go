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
	secs := []int64{-62167219200, 0, 1796391606, 253402300799} // 0000-01-01, 1970, 2026, 9999-12-31
	for range 2000 {
		secs = append(secs, r.Int64N(253402300799+62167219200)-62167219200)
	}
	var c SecondText
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
