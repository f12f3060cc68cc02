package policy

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// TestClassRunMatchesRegexp: for the patterns it takes, a classRun decides
// every identity as the regexp does; the others it leaves to the regexp.
func TestClassRunMatchesRegexp(t *testing.T) {
	taken := []string{
		`^[a-z0-9_]+$`, `[a-z0-9_]+`, `^[A-Za-z0-9._-]{1,64}$`, `\w*`, `^\d{3,}$`, `(?i)[a-c]{2}`,
		`^[[:alnum:]]+$`, `[a-z]{0,3}`, `^(?:[x-z]+)$`, `^[a-z]+`, // anchored by parse.go's ^(?:…)$ anyway
	}
	left := []string{
		`agent_.*`, `^[a-z]+_[0-9]+$`, `a+`, `[a-zé]+`, `.+`, `(?s).*`, `[a-z]+|[0-9]+`, `(?m)^[a-z]+$`, `[^a-z]+`, // a negated class holds non-ASCII runes
		`[\p{L}]+`, `([a-z]+)`,
	}
	alphabet := []byte("abcxyzABCZ0129_.-é \n\x00\xff")
	r := rand.New(rand.NewPCG(1, 2))
	inputs := []string{"", "a", "agent_7", "Agent_7", "abc", "ab", strings.Repeat("a", 64), strings.Repeat("a", 65), "123", "12", "é", "a\n", "\na"}
	for range 3000 {
		b := make([]byte, r.IntN(8))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		inputs = append(inputs, string(b))
	}
	compile := func(src string) *regexp.Regexp { return regexp.MustCompile(`^(?:` + src + `)$`) } // as parse.go does
	for _, src := range taken {
		re := compile(src)
		c := newClassRun(re)
		if c == nil {
			t.Errorf("%s: not taken", src)
			continue
		}
		for _, in := range inputs {
			if got, want := c.match(in), re.MatchString(in); got != want {
				t.Errorf("%s on %q: classRun %v, regexp %v", src, in, got, want)
			}
		}
	}
	for _, src := range left {
		if newClassRun(compile(src)) != nil {
			t.Errorf("%s: taken, want it left to the regexp", src)
		}
	}
}
