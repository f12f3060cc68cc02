// Package freeport picks loopback addresses for tests and benchmarks
// that start tokend as a process and must name its ports up front.
//
// Asking the kernel for a free port (listening on port 0) and closing it
// again leaves a window in which the same port can be handed out again:
// to another listener on port 0, or as the local port of any outgoing
// connection, since both come from the ephemeral range. With test
// packages running in parallel, each opening thousands of connections,
// tokend then fails to listen now and then. Ports below the ephemeral
// range are handed out by neither, so a free one chosen at random there
// stays free unless another test picks the same one.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is the lowest port chosen: above the well-known and most
// registered services' ports.
const lowest = 10000

// Addr returns "127.0.0.1:port" for a port below the ephemeral range on
// which nothing listens right now.
func Addr() (string, error) {
	hi := ephemeralLow() - 1
	if hi <= lowest {
		// An ephemeral range that starts this low leaves no room: fall
		// back on the kernel's choice.
		return kernelAddr()
	}
	for range 100 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(lowest+rand.IntN(hi-lowest+1)))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		return addr, nil
	}
	return "", fmt.Errorf("freeport: no free port found between %d and %d", lowest, hi)
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux;
// 32768 elsewhere, as on most systems).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

func kernelAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
