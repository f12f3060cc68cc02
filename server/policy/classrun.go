package policy

import (
	"regexp"
	"regexp/syntax"
	"unicode/utf8"
)

// classRun matches the most common identity patterns, a run of characters
// of one ASCII class anchored at both ends (^[a-z0-9_]+$,
// ^[A-Za-z0-9._-]{1,64}$, ^\w*$), with a table lookup per byte instead of
// the regexp machine: a policy decision runs on every mint, and the
// regexp was about a tenth of it. It decides exactly as the regexp it
// was made from (TestClassRunMatchesRegexp).
type classRun struct {
	in       [256]bool
	min, max int // max -1: no upper bound
}

// newClassRun returns a classRun deciding as re, or nil when re is not
// such a pattern (then re decides).
func newClassRun(re *regexp.Regexp) *classRun {
	t, err := syntax.Parse(re.String(), syntax.Perl)
	if err != nil {
		return nil
	}
	var nodes []*syntax.Regexp
	var flatten func(*syntax.Regexp)
	flatten = func(n *syntax.Regexp) {
		if n.Op == syntax.OpConcat {
			for _, s := range n.Sub {
				flatten(s)
			}
			return
		}
		nodes = append(nodes, n)
	}
	flatten(t)
	i, j := 0, len(nodes)
	for i < j && nodes[i].Op == syntax.OpBeginText {
		i++
	}
	for j > i && nodes[j-1].Op == syntax.OpEndText {
		j--
	}
	if i == 0 || j == len(nodes) || j-i != 1 {
		return nil // not anchored at both ends, or more than one run
	}
	n := nodes[i]
	c := &classRun{}
	switch n.Op {
	case syntax.OpPlus:
		c.min, c.max = 1, -1
	case syntax.OpStar:
		c.min, c.max = 0, -1
	case syntax.OpRepeat:
		c.min, c.max = n.Min, n.Max
	default:
		return nil
	}
	class := n.Sub[0]
	if class.Op != syntax.OpCharClass {
		return nil
	}
	for k := 0; k+1 < len(class.Rune); k += 2 {
		lo, hi := class.Rune[k], class.Rune[k+1]
		if lo < 0 || hi >= utf8.RuneSelf {
			return nil // beyond ASCII: the regexp knows runes
		}
		for r := lo; r <= hi; r++ {
			c.in[r] = true
		}
	}
	return c
}

// match reports whether s is min to max characters of the class.
func (c *classRun) match(s string) bool {
	if len(s) < c.min || (c.max >= 0 && len(s) > c.max) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !c.in[s[i]] {
			return false
		}
	}
	return true
}
