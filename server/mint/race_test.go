//go:build race

package mint_test

// raceEnabled: the race detector makes sync.Pool drop what is put in it
// at random, so allocation counts hold only without it.
const raceEnabled = true
