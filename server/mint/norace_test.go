//go:build !race

package mint_test

const raceEnabled = false
