package auth

import (
	"net"
	"sync"
	"sync/atomic"
)

// peerAddrs caches the text of gRPC peers' TCP addresses.
//
// Every call's peer address is recorded as text (ClientAddr: the audit
// record and the logs carry it). grpc-go gives every stream of a
// connection the same net.Addr, the *net.TCPAddr its connection returned,
// so the text is made once per connection rather than once per call
// (net.JoinHostPort, the IP's and port's text: three allocations).
//
// The cache is keyed by that pointer, so an entry is never wrong: a
// *net.TCPAddr is not changed once a connection has it, and an entry
// keeps its address alive, so the pointer cannot be reused for another.
// It is bounded: when it reaches maxPeerAddrs entries it is emptied and
// starts again (the live connections fill it again on their next call).
var peerAddrs struct {
	m sync.Map // *net.TCPAddr -> string
	n atomic.Int64
}

// maxPeerAddrs bounds peerAddrs: about 200 KiB at most.
const maxPeerAddrs = 2048

// peerAddrString returns addr.String(), from the cache for a TCP address.
func peerAddrString(addr net.Addr) string {
	ta, ok := addr.(*net.TCPAddr)
	if !ok || ta == nil {
		if addr == nil {
			return ""
		}
		return addr.String()
	}
	if s, ok := peerAddrs.m.Load(ta); ok {
		return s.(string)
	}
	s := ta.String()
	if peerAddrs.n.Add(1) > maxPeerAddrs {
		peerAddrs.m.Clear()
		peerAddrs.n.Store(1)
	}
	peerAddrs.m.Store(ta, s)
	return s
}
