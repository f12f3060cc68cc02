package mint

import (
	"sync/atomic"
	"time"
)

// SecondText caches the RFC 3339 text of one UTC second,
// "2006-01-02T15:04:05": the timestamps written in one second (a token's
// issue and expiry times, an audit record's time) are the same text, and
// working out a date and a clock for each costs more than the copy. Each
// kind of timestamp should have its own cache (an issue time and an
// expiry time an hour later would take turns evicting each other). Safe
// for concurrent use; the zero value is ready.
type SecondText struct{ last atomic.Pointer[secondText] }

type secondText struct {
	secs int64
	text [19]byte
}

// MinSecond and MaxSecond are the Unix times of 0000-01-01T00:00:00Z and
// 9999-12-31T23:59:59Z, the range of SecondText.Append.
const (
	MinSecond = -62167219200
	MaxSecond = 253402300799
)

// Append appends the text of secs, a Unix time from MinSecond to
// MaxSecond (the caller checks the range).
func (c *SecondText) Append(b []byte, secs int64) []byte {
	t := c.last.Load()
	if t == nil || t.secs != secs {
		t = &secondText{secs: secs}
		tm := time.Unix(secs, 0).UTC()
		y, mo, d := tm.Date()
		h, mi, s := tm.Clock()
		t.text = [19]byte{
			byte('0' + y/1000), byte('0' + y/100%10), byte('0' + y/10%10), byte('0' + y%10), '-',
			byte('0' + int(mo)/10), byte('0' + int(mo)%10), '-', byte('0' + d/10), byte('0' + d%10), 'T',
			byte('0' + h/10), byte('0' + h%10), ':', byte('0' + mi/10), byte('0' + mi%10), ':',
			byte('0' + s/10), byte('0' + s%10),
		}
		c.last.Store(t)
	}
	return append(b, t.text[:]...)
}
