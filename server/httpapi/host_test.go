package httpapi

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LocalHost:1": true, "127.0.0.1:65535": true, "[::1]": true, "[::1]:8080": true,
		"": false, ":8080": false, "localhost:": false, "localhost:0": false, "localhost:65536": false,
		"localhost:+80": false, "localhost:0080": false, "localhost:8080:": false, "localhost.": false,
		"127.0.0.1.": false, "127.000.000.001": false, "0x7f.1": false, "::1": false, "[::1]:": false,
		"[0:0:0:0:0:0:0:1]:80": false, "[::1]80": false, "[::1": false, "localhost\x00": false,
		"evil.example": false, "localhost.evil.example": false, "xn--localhost": false,
	} {
		if got := LoopbackHost(host); got != want {
			t.Errorf("LoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// FuzzLoopbackHost: whatever LoopbackHost accepts is one of the three
// loopback names, with at most a valid port.
func FuzzLoopbackHost(f *testing.F) {
	for _, s := range []string{"localhost", "localhost:8080", "[::1]:1", "127.0.0.1", "evil:80", "[::1]x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		if !LoopbackHost(host) {
			return
		}
		name, port := host, ""
		if h, p, err := net.SplitHostPort(host); err == nil {
			name, port = h, p
		} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
			name = host[1 : len(host)-1]
		}
		switch strings.ToLower(name) {
		case "localhost", "127.0.0.1", "::1":
		default:
			t.Fatalf("LoopbackHost(%q) = true for host name %q", host, name)
		}
		if name == "::1" && !strings.HasPrefix(host, "[") {
			t.Fatalf("LoopbackHost(%q) = true for an unbracketed IPv6 address", host)
		}
		if port != "" {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
				t.Fatalf("LoopbackHost(%q) = true with port %q", host, port)
			}
		}
	})
}
