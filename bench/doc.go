// Package bench measures tokend's mint core against its floor (the same
// claims appended into a buffer and signed with HMAC-SHA256, nothing else)
// and against twilio-go's AccessToken.ToJwt, in one `go test -bench` run,
// and prints the ratios (make bench). It is a module of its own so that
// tokend itself does not depend on twilio-go.
package bench
