// Package gctune keeps the Go garbage collector from running too often
// when the live heap is small.
//
// The collector's default (GOGC=100) starts a cycle each time the heap
// doubles. tokend's live heap is a few MiB on a small install while every
// call allocates a few KiB (gRPC and HTTP framing, metadata, the token),
// so under load it collects dozens of times a second (in the load
// profile, the collector and allocation slow paths were about a fifth of a
// Mint's CPU). A fixed GOGC high
// enough for that (400) would multiply a large store's heap (100,000
// applications) by five.
//
// Headroom instead sets GOGC so that the collector lets the heap grow by
// at least a fixed number of bytes over the live heap, and never by less
// than the default's 100%: GOGC = max(100, 100·headroom/live). A small
// heap gets room enough to collect rarely; a large heap is left at the
// default. This is what a "heap ballast" did, without the ballast. The
// live heap is re-read after every collection and every Interval
// (runtime/metrics), and GOGC is only changed when it moves by more than
// a tenth.
//
// An operator's own GOGC (the environment variable) wins: Run does
// nothing when it is set. GOMEMLIMIT keeps working, as it bounds the heap
// whatever GOGC says.
package gctune
