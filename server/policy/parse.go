package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/tokend/tokend/internal/yamlpos"
	"github.com/tokend/tokend/server/sid"
)

// maxErrors bounds how many errors one Parse reports.
const maxErrors = 20

// Load reads and parses the policy file at path. Errors name the file,
// the line and the field.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxPolicyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("policy: read %s: %w", path, err)
	}
	return Parse(data, path)
}

// Parse parses and validates a policy; name (usually the file name) leads
// every error message, as in "policy.yaml:12: rules[1].grants.video.rooms:
// invalid regexp: ...". Unknown fields, duplicate keys, aliases and more
// than one YAML document are errors. All errors found (up to 20) are
// returned, joined.
func Parse(data []byte, name string) (*Policy, error) {
	if len(data) > MaxPolicyBytes {
		return nil, fmt.Errorf("%s: policy is larger than %d bytes", name, MaxPolicyBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s:1: policy: empty document: expected a mapping with rules", name)
		}
		return nil, yamlError(name, data, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, yamlError(name, data, err)
	default:
		return nil, fmt.Errorf("%s:%d: policy: only one YAML document is allowed", name, max(extra.Line, 1))
	}
	p := &parser{name: name, ruleLines: map[string]int{}}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) != 1 {
			return nil, fmt.Errorf("%s:1: policy: empty document: expected a mapping with rules", name)
		}
		root = root.Content[0]
	}
	if !p.noAliases(root, "policy") {
		return nil, errors.Join(p.errs...)
	}
	pol := p.policy(root)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	pol.anonymous = len(pol.AnonymousRules()) > 0
	sum := sha256.Sum256(data)
	pol.Source = name
	pol.Digest = hex.EncodeToString(sum[:])
	return pol, nil
}

// yamlError rewrites a yaml.v3 syntax error as "name:line: message", at
// the line where the fault is (yaml.v3 names the line where the enclosing
// block starts, which is kept in the message when it differs).
func yamlError(name string, data []byte, err error) error {
	line, block, msg, ok := yamlpos.Locate(data, err)
	switch {
	case !ok:
		return fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	case line > block:
		return fmt.Errorf("%s:%d: %s (in the block that starts at line %d)", name, line, msg, block)
	}
	return fmt.Errorf("%s:%d: %s", name, line, msg)
}

type parser struct {
	name      string
	errs      []error
	ruleLines map[string]int // rule name -> line, for uniqueness
}

func (p *parser) fail(n *yaml.Node, path, format string, args ...any) {
	if len(p.errs) >= maxErrors {
		return
	}
	if path == "" {
		path = "policy"
	}
	line := 1
	if n != nil && n.Line > 0 {
		line = n.Line
	}
	p.errs = append(p.errs, fmt.Errorf("%s:%d: %s: %s", p.name, line, path, fmt.Sprintf(format, args...)))
	if len(p.errs) == maxErrors {
		p.errs = append(p.errs, fmt.Errorf("%s: too many errors", p.name))
	}
}

// noAliases rejects aliases anywhere (they would let a small file stand
// for a huge one, and a policy is clearer without them).
func (p *parser) noAliases(n *yaml.Node, path string) bool {
	ok := true
	var walk func(*yaml.Node, int)
	walk = func(n *yaml.Node, depth int) {
		if !ok {
			return
		}
		if depth > 64 {
			p.fail(n, path, "nested too deeply")
			ok = false
			return
		}
		if n.Kind == yaml.AliasNode {
			p.fail(n, path, "aliases (*%s) are not allowed", n.Value)
			ok = false
			return
		}
		for _, c := range n.Content {
			walk(c, depth+1)
		}
	}
	walk(n, 0)
	return ok
}

func child(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fields checks that n is a mapping of known, unique string keys and
// returns its values by key.
func (p *parser) fields(n *yaml.Node, path string, known ...string) (map[string]*yaml.Node, bool) {
	if n.Kind != yaml.MappingNode {
		p.fail(n, path, "must be a mapping with fields %s", strings.Join(known, ", "))
		return nil, false
	}
	out := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			p.fail(k, path, "keys must be strings")
			continue
		}
		if !slices.Contains(known, k.Value) {
			p.fail(k, child(path, k.Value), "unknown field (known: %s)", strings.Join(known, ", "))
			continue
		}
		if _, dup := out[k.Value]; dup {
			p.fail(k, child(path, k.Value), "duplicate field")
			continue
		}
		out[k.Value] = v
	}
	return out, true
}

func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.fail(n, path, "must be a string%s", quoteHint(n))
		return "", false
	}
	return n.Value, true
}

// nonEmpty is str that also rejects empty and blank strings.
func (p *parser) nonEmpty(n *yaml.Node, path string) (string, bool) {
	s, ok := p.str(n, path)
	if ok && strings.TrimSpace(s) == "" {
		p.fail(n, path, "must not be empty")
		return "", false
	}
	return s, ok
}

func quoteHint(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode && n.ShortTag() != "!!null" {
		return fmt.Sprintf(" (got %s %s; quote it to make it a string)", strings.TrimPrefix(n.ShortTag(), "!!"), n.Value)
	}
	return ""
}

func (p *parser) boolean(n *yaml.Node, path string) (bool, bool) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		p.fail(n, path, "must be true or false")
		return false, false
	}
	return b, true
}

func (p *parser) integer(n *yaml.Node, path string) (int64, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		p.fail(n, path, "must be an integer")
		return 0, false
	}
	var i int64
	if err := n.Decode(&i); err != nil {
		p.fail(n, path, "must be an integer that fits in 64 bits")
		return 0, false
	}
	return i, true
}

// entries is the number of elements of a sequence; 1 for anything else
// (which is reported as an error where it is parsed).
func entries(n *yaml.Node) int {
	if n.Kind == yaml.SequenceNode {
		return len(n.Content)
	}
	return 1
}

// strings parses a sequence of non-empty strings, calling each for every
// element that parsed.
func (p *parser) strings(n *yaml.Node, path string, each func(*yaml.Node, string, string)) {
	if n.Kind != yaml.SequenceNode {
		p.fail(n, path, "must be a list of strings")
		return
	}
	for i, e := range n.Content {
		ep := path + "[" + strconv.Itoa(i) + "]"
		if s, ok := p.nonEmpty(e, ep); ok {
			each(e, ep, s)
		}
	}
}

// formatRune returns the first Unicode format character (category Cf) of
// s.
func formatRune(s string) (rune, bool) {
	if i := strings.IndexFunc(s, func(r rune) bool { return unicode.Is(unicode.Cf, r) }); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		return r, true
	}
	return 0, false
}

func (p *parser) pattern(n *yaml.Node, path string) (*regexp.Regexp, string, bool) {
	src, ok := p.nonEmpty(n, path)
	if !ok {
		return nil, "", false
	}
	// A pattern is read by people: one holding an invisible format
	// character (written in the file, not as an escape such as \x{202e})
	// does not say what it matches.
	if r, ok := formatRune(src); ok {
		p.fail(n, path, "must not contain Unicode format characters (category Cf; write them as escapes such as \\x{%x}): found %U", r, r)
		return nil, "", false
	}
	if len(src) > maxPatternLen {
		p.fail(n, path, "pattern is longer than %d bytes", maxPatternLen)
		return nil, "", false
	}
	if _, err := regexp.Compile(src); err != nil {
		p.fail(n, path, "invalid regexp: %s", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		return nil, "", false
	}
	re, err := regexp.Compile(`^(?:` + src + `)$`)
	if err != nil {
		p.fail(n, path, "invalid regexp: %s", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		return nil, "", false
	}
	return re, src, true
}

func (p *parser) policy(root *yaml.Node) *Policy {
	pol := &Policy{}
	f, ok := p.fields(root, "", "rules")
	if !ok {
		return pol
	}
	rules, ok := f["rules"]
	if !ok {
		p.fail(root, "rules", "is required")
		return pol
	}
	if rules.Kind != yaml.SequenceNode {
		p.fail(rules, "rules", "must be a list of rules")
		return pol
	}
	for i, n := range rules.Content {
		if r := p.rule(n, "rules["+strconv.Itoa(i)+"]"); r != nil {
			pol.Rules = append(pol.Rules, r)
		}
	}
	return pol
}

var validRuleName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:/@-]*$`)

func (p *parser) rule(n *yaml.Node, path string) *Rule {
	f, ok := p.fields(n, path, "name", "principals", "groups", "kinds", "applications", "identities", "grants", "max_ttl_seconds", "rate_limit")
	if !ok {
		return nil
	}
	r := &Rule{Line: n.Line, MaxTTLSeconds: DefaultMaxTTLSeconds}

	if v, ok := f["name"]; !ok {
		p.fail(n, child(path, "name"), "is required")
	} else if name, ok := p.nonEmpty(v, child(path, "name")); ok {
		switch {
		case len(name) > 128 || !validRuleName.MatchString(name):
			p.fail(v, child(path, "name"), "must be at most 128 letters, digits and _.:/@- starting with a letter or digit")
		case name == RuleDefaultDeny || name == RuleBrowserIdentity:
			p.fail(v, child(path, "name"), "%s is reserved", name)
		case p.ruleLines[name] != 0:
			p.fail(v, child(path, "name"), "duplicate rule name %s (first at line %d)", name, p.ruleLines[name])
		default:
			p.ruleLines[name] = v.Line
		}
		r.Name = name
	}

	// Selectors: count the entries written, valid or not, so that a rule
	// whose only selector is invalid gets one error, not two.
	selectors := 0
	if v, ok := f["principals"]; ok {
		selectors += entries(v)
		p.strings(v, child(path, "principals"), func(e *yaml.Node, ep, s string) {
			if pr, ok := p.principal(e, ep, s); ok {
				r.principals = append(r.principals, pr)
			}
		})
	}
	if v, ok := f["groups"]; ok {
		selectors += entries(v)
		r.groups = map[string]bool{}
		p.strings(v, child(path, "groups"), func(_ *yaml.Node, _ string, s string) { r.groups[s] = true })
	}
	if v, ok := f["kinds"]; ok {
		selectors += entries(v)
		r.kinds = map[string]bool{}
		p.strings(v, child(path, "kinds"), func(e *yaml.Node, ep, s string) {
			if !slices.Contains(knownKinds, s) {
				p.fail(e, ep, "unknown kind %s (known: %s)", s, strings.Join(knownKinds, ", "))
				return
			}
			r.kinds[s] = true
		})
	}
	if selectors == 0 {
		p.fail(n, path, "needs at least one selector: principals, groups or kinds")
	}

	if v, ok := f["applications"]; !ok {
		p.fail(n, child(path, "applications"), `is required: TwiML application SIDs or "*"`)
	} else {
		if entries(v) == 0 {
			p.fail(v, child(path, "applications"), `must not be empty: TwiML application SIDs or "*"`)
		}
		p.strings(v, child(path, "applications"), func(e *yaml.Node, ep, s string) {
			switch {
			case s == "*":
				r.anyApp = true
			case sid.Valid(s, "AP"):
				r.applications = append(r.applications, s)
			default:
				p.fail(e, ep, `must be "*" or a TwiML application SID: AP followed by 32 hex digits`)
			}
		})
	}

	if v, ok := f["identities"]; !ok {
		p.fail(n, child(path, "identities"), "is required: {self: true}, {list: [...]} or {pattern: ...}")
	} else {
		p.identities(v, child(path, "identities"), &r.identities)
	}

	if v, ok := f["grants"]; ok {
		p.grants(v, child(path, "grants"), &r.grants)
	}

	if v, ok := f["max_ttl_seconds"]; ok {
		if ttl, ok := p.integer(v, child(path, "max_ttl_seconds")); ok {
			if ttl < 1 || ttl > MaxTTLSeconds {
				p.fail(v, child(path, "max_ttl_seconds"), "must be between 1 and %d, got %d", MaxTTLSeconds, ttl)
			} else {
				r.MaxTTLSeconds = ttl
			}
		}
	}
	p.anonymousRule(n, path, f, r)
	return r
}

func (p *parser) principal(n *yaml.Node, path, s string) (principal, bool) {
	kind, name, found := strings.Cut(s, ":")
	if !found || !slices.Contains(knownKinds, kind) {
		// A bare name (a SPIFFE ID has a colon too): an mTLS caller.
		return principal{kind: KindMTLS, name: s}, true
	}
	if kind == KindAnonymous {
		p.fail(n, path, `anonymous callers have no name: use kinds: ["anonymous"]`)
		return principal{}, false
	}
	if strings.TrimSpace(name) == "" {
		p.fail(n, path, "%s: needs a name after the colon", kind)
		return principal{}, false
	}
	return principal{kind: kind, name: name}, true
}

func (p *parser) identities(n *yaml.Node, path string, ir *identityRule) {
	f, ok := p.fields(n, path, "self", "list", "pattern", "fixed", "generate")
	if !ok {
		return
	}
	set := false
	if v, ok := f["fixed"]; ok {
		set = true
		if s, ok := p.nonEmpty(v, child(path, "fixed")); ok {
			if !validAnonIdentity.MatchString(s) || len(s) > maxFixedIdentity {
				p.fail(v, child(path, "fixed"), "must be 1 to %d letters, digits or _ (a voice identity)", maxFixedIdentity)
			} else {
				ir.fixed = s
			}
		}
	}
	if v, ok := f["generate"]; ok {
		set = true
		if s, ok := p.nonEmpty(v, child(path, "generate")); ok {
			if !validAnonIdentity.MatchString(s) || len(s) > maxGeneratePrefix {
				p.fail(v, child(path, "generate"), "must be a prefix of 1 to %d letters, digits or _ (a random suffix of %d hex digits follows it)", maxGeneratePrefix, generatedSuffixLen)
			} else {
				ir.generate = s
			}
		}
	}
	if v, ok := f["self"]; ok {
		b, ok := p.boolean(v, child(path, "self"))
		ir.self = b
		set = set || b || !ok
	}
	if v, ok := f["list"]; ok {
		set = true
		if entries(v) == 0 {
			p.fail(v, child(path, "list"), "must not be empty")
		}
		ir.list = map[string]bool{}
		p.strings(v, child(path, "list"), func(e *yaml.Node, ep string, s string) {
			// tokend refuses such identities, so the entry could only
			// mislead a reader (an RLO makes "alice" look like another).
			if r, ok := formatRune(s); ok {
				p.fail(e, ep, "must not contain Unicode format characters (category Cf): found %U", r)
				return
			}
			ir.list[s] = true
		})
	}
	if v, ok := f["pattern"]; ok {
		set = true
		if re, src, ok := p.pattern(v, child(path, "pattern")); ok {
			ir.pattern, ir.source, ir.fast = re, src, newClassRun(re)
		}
	}
	if !set {
		p.fail(n, path, "must allow some identities: self: true, list or pattern")
	}
}

func (p *parser) grants(n *yaml.Node, path string, gr *grantRule) {
	f, ok := p.fields(n, path, "voice", "video", "chat", "data_sync", "task_router", "player")
	if !ok {
		return
	}
	// What a grant reaches is unrestricted unless the rule says otherwise,
	// but voice outgoing calls: only through the signing application, with
	// no params.
	gr.outgoingSelf = true
	gr.voicePush = anyScope
	gr.chatServices, gr.chatPush, gr.chatRoles = anyScope, anyScope, anyScope
	gr.syncServices = anyScope
	gr.workspaces, gr.workers, gr.roles = anyScope, anyScope, anyScope
	if v, ok := f["voice"]; ok {
		p.voice(v, child(path, "voice"), gr)
	}
	if v, ok := f["video"]; ok {
		vp := child(path, "video")
		if v.Kind == yaml.MappingNode {
			vf, _ := p.fields(v, vp, "rooms")
			if x, ok := vf["rooms"]; !ok {
				p.fail(v, child(vp, "rooms"), `is required: a room name pattern (".*" for any room)`)
			} else if re, src, ok := p.pattern(x, child(vp, "rooms")); ok {
				gr.video = true
				if anyPattern(src) {
					gr.anyRoom = true
				} else {
					gr.rooms, gr.roomsSource = re, src
				}
			}
		} else if b, ok := p.boolean(v, vp); ok {
			gr.video, gr.anyRoom = b, b
		}
	}
	if v, ok := f["chat"]; ok {
		gr.chat = p.grantScopes(v, child(path, "chat"), []scopeField{
			{"services", "IS", &gr.chatServices},
			{"push_credentials", "CR", &gr.chatPush},
			{"deployment_roles", "RL", &gr.chatRoles},
		})
	}
	if v, ok := f["data_sync"]; ok {
		gr.dataSync = p.grantScopes(v, child(path, "data_sync"), []scopeField{
			{"services", "IS", &gr.syncServices},
		})
	}
	if v, ok := f["task_router"]; ok {
		gr.taskRouter = p.grantScopes(v, child(path, "task_router"), []scopeField{
			{"workspaces", "WS", &gr.workspaces},
			{"workers", "WK", &gr.workers},
			{"roles", "", &gr.roles},
		})
	}
	if v, ok := f["player"]; ok {
		gr.player, _ = p.boolean(v, child(path, "player"))
	}
}

// voice parses grants.voice: true, false or {incoming, outgoing,
// push_credentials}, where outgoing is true, false or {applications,
// params}.
func (p *parser) voice(v *yaml.Node, vp string, gr *grantRule) {
	if v.Kind != yaml.MappingNode {
		if b, ok := p.boolean(v, vp); ok {
			gr.voice, gr.voiceIncoming, gr.voiceOutgoing = b, b, b
		}
		return
	}
	vf, _ := p.fields(v, vp, "incoming", "outgoing", "push_credentials")
	gr.voice = true
	if x, ok := vf["incoming"]; ok {
		gr.voiceIncoming, _ = p.boolean(x, child(vp, "incoming"))
	}
	if x, ok := vf["push_credentials"]; ok {
		gr.voicePush = p.scope(x, child(vp, "push_credentials"), "CR", false)
	}
	x, ok := vf["outgoing"]
	if !ok {
		return
	}
	op := child(vp, "outgoing")
	if x.Kind != yaml.MappingNode {
		gr.voiceOutgoing, _ = p.boolean(x, op)
		return
	}
	of, _ := p.fields(x, op, "applications", "params")
	gr.voiceOutgoing = true
	if a, ok := of["applications"]; ok {
		gr.outgoingSelf = false
		gr.outgoingApps = p.scope(a, child(op, "applications"), "AP", true)
		// "self" is kept out of the list: it is the signing application.
		gr.outgoingApps.list = slices.DeleteFunc(gr.outgoingApps.list, func(s string) bool {
			if s == selfApplication {
				gr.outgoingSelf = true
				return true
			}
			return false
		})
	}
	if a, ok := of["params"]; ok {
		gr.params = p.scope(a, child(op, "params"), "", false)
	}
}

// selfApplication names the signing application in
// voice.outgoing.applications.
const selfApplication = "self"

type scopeField struct {
	key    string
	prefix string // SID prefix of the values; "" for names
	dst    *scope
}

// grantScopes parses a grant that is true, false or a mapping of the
// scopes fields restrict (any that is absent stays unrestricted), and
// returns whether the grant is allowed.
func (p *parser) grantScopes(v *yaml.Node, path string, fields []scopeField) bool {
	if v.Kind != yaml.MappingNode {
		b, _ := p.boolean(v, path)
		return b
	}
	known := make([]string, len(fields))
	for i, sf := range fields {
		known[i] = sf.key
	}
	f, _ := p.fields(v, path, known...)
	for _, sf := range fields {
		if x, ok := f[sf.key]; ok {
			*sf.dst = p.scope(x, child(path, sf.key), sf.prefix, false)
		}
	}
	return true
}

// scope parses "*" (any value) or a list of values: SIDs with prefix, or
// any non-empty names when prefix is "" ("*" in the list also means any).
// With self, "self" may be listed too (the signing application).
func (p *parser) scope(n *yaml.Node, path, prefix string, self bool) scope {
	if n.Kind == yaml.ScalarNode {
		if n.ShortTag() == "!!str" && n.Value == "*" {
			return anyScope
		}
		p.fail(n, path, `must be "*" or a list%s%s`, describeValues(prefix, self), quoteHint(n))
		return scope{}
	}
	sc := scope{fold: prefix != ""}
	if n.Kind != yaml.SequenceNode {
		p.fail(n, path, `must be "*" or a list%s`, describeValues(prefix, self))
		return sc
	}
	p.strings(n, path, func(e *yaml.Node, ep, s string) {
		switch {
		case s == "*":
			sc.any = true
		case self && s == selfApplication:
			sc.list = append(sc.list, s)
		case prefix == "":
			// tokend refuses these characters in the params keys and
			// roles a token carries, so such an entry could only
			// mislead a reader.
			if r, ok := formatRune(s); ok {
				p.fail(e, ep, "must not contain Unicode format characters (category Cf): found %U", r)
				return
			}
			sc.list = append(sc.list, s)
		case sid.Valid(s, prefix):
			sc.list = append(sc.list, s)
		default:
			p.fail(e, ep, `must be "*"%s or a SID: %s followed by 32 hex digits`, map[bool]string{true: `, "self"`}[self], prefix)
		}
	})
	return sc
}

func describeValues(prefix string, self bool) string {
	switch {
	case prefix == "":
		return " of names"
	case self:
		return ` of "self" and ` + prefix + " SIDs"
	}
	return " of " + prefix + " SIDs"
}

// anyPattern reports whether a rooms pattern is ".*", the one that allows
// a token for any room.
func anyPattern(src string) bool {
	s := strings.TrimSuffix(strings.TrimPrefix(src, "^"), "$")
	return s == ".*"
}
