//go:build race

package audit

// raceEnabled: the race detector makes sync.Pool drop what is put in it
// at random, so allocation counts mean nothing.
const raceEnabled = true
