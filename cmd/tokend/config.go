package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tokend/tokend/internal/yamlpos"

	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/server/secrets"
	"github.com/tokend/tokend/server/storage/postgres"
	"github.com/tokend/tokend/server/tokenapi"
)

// The config file (--config, env TOKEND_CONFIG) is a YAML mapping of
// options, each key named like its flag with underscores for hyphens
// (grpc_addr for --grpc-addr). Where two sources give an option, the
// first of these wins: the command line, the environment (TOKEND_*), the
// config file, the built-in default.
//
// Secrets are never written in the file: the master keyring and the admin
// token come from the environment (TOKEND_MASTER_KEY, TOKEND_ADMIN_TOKEN)
// or from files the config file names (master_key_file, admin_token_file),
// and a store DSN in the file must hold no password (put the DSN in
// TOKEND_STORE, or the password in PGPASSWORD or a PGPASSFILE). Relative
// paths in the file (data_dir, master_key_file, admin_token_file) are
// relative to tokend's working directory, as on the command line.

// configFlag is the flag naming the config file; it is not an option of
// the file itself.
const configFlag = "config"

// Source names where an option's value came from.
const (
	srcDefault = "default"
	srcFile    = "file"
	srcEnv     = "env"
	srcFlag    = "flag"
)

// setting is one option's effective value and its origin.
type setting struct {
	flag  string // flag name: grpc-addr
	key   string // config file key: grpc_addr
	env   string // environment variable: TOKEND_GRPC_ADDR
	value flag.Value
	src   string // srcDefault, srcFile, srcEnv or srcFlag
	line  int    // line in the config file, for srcFile
}

// origin describes where s came from, for errors: "" for a flag (the
// error names the flag already).
func (s setting) origin(file string) string {
	switch s.src {
	case srcEnv:
		return " (from " + s.env + ")"
	case srcFile:
		return fmt.Sprintf(" (from %s line %d, key %s)", file, s.line, s.key)
	case srcDefault:
		return " (the default)"
	}
	return ""
}

// listKeys may be written as a YAML sequence in the config file; the
// items are joined with commas, as the flag takes them.
var listKeys = map[string]bool{"cors_origins": true}

// envOnly are the keys the config file refuses, with what to do instead:
// secrets never sit in it, and the seed credentials come from the
// environment only.
var envOnly = map[string]string{
	"master_key":    "secrets are never read from the config file: put the keyring in a file and name it with master_key_file, or set " + secrets.EnvVar,
	"admin_token":   "secrets are never read from the config file: put the token in a file and name it with admin_token_file, or set TOKEND_ADMIN_TOKEN",
	"api_secret":    "secrets are never read from the config file: set " + server.EnvAPISecret + " in the environment",
	"api_key":       "the seed credentials come from the environment only: set " + server.EnvAPIKey,
	"account_sid":   "the seed credentials come from the environment only: set " + server.EnvAccountSID,
	"twiml_app_sid": "the seed credentials come from the environment only: set " + server.EnvTwiMLAppSID,
	configFlag:      "a config file cannot name another config file",
}

func keyOf(flagName string) string { return strings.ReplaceAll(flagName, "-", "_") }

func envName(flagName string) string {
	return "TOKEND_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// fileValue is one option's value in the config file.
type fileValue struct {
	value string
	line  int
}

// loadConfigFile reads the YAML config file at path. known holds the
// valid keys. Unknown keys, secrets, duplicates and values that are not
// scalars are errors naming the key and its line.
func loadConfigFile(path string, known map[string]bool) (map[string]fileValue, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parseConfig(path, b, known)
}

func parseConfig(name string, b []byte, known map[string]bool) (map[string]fileValue, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return map[string]fileValue{}, nil // an empty file sets nothing
		}
		return nil, configYAMLError(name, b, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("config %s line %d: want one YAML document, found another", name, extra.Line)
	} else if !errors.Is(err, io.EOF) {
		return nil, configYAMLError(name, b, err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return map[string]fileValue{}, nil
		}
		root = root.Content[0]
	}
	root = deref(root)
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return map[string]fileValue{}, nil // a file of comments only
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config %s line %d: want a mapping of option: value", name, root.Line)
	}
	out := map[string]fileValue{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := deref(root.Content[i]), deref(root.Content[i+1])
		at := fmt.Sprintf("config %s line %d", name, k.Line)
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%s: want an option name as the key", at)
		}
		key := k.Value
		if why, ok := envOnly[key]; ok {
			return nil, fmt.Errorf("%s: key %q not allowed: %s", at, key, why)
		}
		if !known[key] {
			return nil, fmt.Errorf("%s: unknown key %q%s", at, key, suggest(key, known))
		}
		if prev, dup := out[key]; dup {
			return nil, fmt.Errorf("%s: key %q given twice (first at line %d)", at, key, prev.line)
		}
		at = fmt.Sprintf("config %s line %d: %s", name, v.Line, key)
		switch {
		case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
			out[key] = fileValue{"", k.Line}
		case v.Kind == yaml.ScalarNode:
			out[key] = fileValue{v.Value, k.Line}
		case v.Kind == yaml.SequenceNode && listKeys[key]:
			items := make([]string, 0, len(v.Content))
			for _, it := range v.Content {
				it = deref(it)
				if it.Kind != yaml.ScalarNode || strings.Contains(it.Value, ",") {
					return nil, fmt.Errorf("config %s line %d: %s: want a list of plain values without commas", name, it.Line, key)
				}
				items = append(items, it.Value)
			}
			out[key] = fileValue{strings.Join(items, ","), k.Line}
		case listKeys[key]:
			return nil, fmt.Errorf("%s: want a value or a list of values", at)
		default:
			return nil, fmt.Errorf("%s: want a single value, not a list or mapping", at)
		}
		if key == "store" && dsnHasPassword(out[key].value) {
			return nil, fmt.Errorf("%s: the config file must not hold the database password: set the DSN in TOKEND_STORE instead (e.g. from a Kubernetes Secret), or keep the password in PGPASSWORD or a PGPASSFILE", at)
		}
	}
	return out, nil
}

// configYAMLError names the line of a YAML syntax error in the config
// file: the line of the fault, not where its block starts.
func configYAMLError(name string, b []byte, err error) error {
	line, block, msg, ok := yamlpos.Locate(b, err)
	switch {
	case !ok:
		return fmt.Errorf("config %s: %w", name, err)
	case line > block:
		return fmt.Errorf("config %s line %d: %s (in the block that starts at line %d)", name, line, msg, block)
	}
	return fmt.Errorf("config %s line %d: %s", name, line, msg)
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// suggest names the known key an unknown one probably meant: the same
// key in lower case with underscores, else the nearest one by edit
// distance, else the list of known keys.
func suggest(key string, known map[string]bool) string {
	if k := strings.ToLower(strings.ReplaceAll(key, "-", "_")); known[k] {
		return fmt.Sprintf(" (did you mean %s?)", k)
	}
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	sort.Strings(names)
	if k := nearest(strings.ToLower(strings.ReplaceAll(key, "-", "_")), names); k != "" {
		return fmt.Sprintf(" (did you mean %s?)", k)
	}
	return "; known keys: " + strings.Join(names, ", ")
}

// suggestFlag rewrites the flag package's error for an unknown flag so
// that it names the nearest known flag.
func suggestFlag(fs *flag.FlagSet, err error) error {
	const prefix = "flag provided but not defined: -"
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) {
		return err
	}
	name := strings.TrimPrefix(msg, prefix)
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	norm := strings.ToLower(strings.ReplaceAll(strings.TrimLeft(name, "-"), "_", "-"))
	if fs.Lookup(norm) != nil {
		return fmt.Errorf("unknown flag --%s (did you mean --%s?)", name, norm)
	}
	if n := nearest(norm, names); n != "" {
		return fmt.Errorf("unknown flag --%s (did you mean --%s?)", name, n)
	}
	return fmt.Errorf("unknown flag --%s (tokend -h lists the flags)", name)
}

// nearest returns the candidate closest to name by edit distance, if it is
// close enough to be a typo or a near miss (at most a third of the name
// differs, or it starts the same up to a different suffix); "" if none is.
// Ties go to the first in candidates.
func nearest(name string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		d := editDistance(name, c)
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	limit := max(2, len(name)/3)
	if bestD <= limit {
		return best
	}
	// A near miss in the suffix: --audit-file for --audit-log. Of the
	// candidates sharing the prefix, the nearest one, unless two are as
	// near.
	if i := strings.LastIndexAny(name, "-_"); i > 0 {
		match, matchD, tie := "", -1, false
		for _, c := range candidates {
			if !strings.HasPrefix(c, name[:i+1]) {
				continue
			}
			switch d := editDistance(name, c); {
			case matchD < 0 || d < matchD:
				match, matchD, tie = c, d, false
			case d == matchD:
				tie = true
			}
		}
		if tie {
			return "" // ambiguous
		}
		return match
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// layer completes the options parsed from the command line: an option not
// given as a flag takes its environment variable (already the flag's
// default, see parse), else the config file's value, else the built-in
// default. It records each option's source in o.settings.
func layer(fs *flag.FlagSet, o *options, getenv func(string) string) error {
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	switch {
	case explicit[configFlag]:
		o.configSrc = "flag --" + configFlag
	case o.configFile != "":
		o.configSrc = "env TOKEND_CONFIG"
	}
	known := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != configFlag {
			known[keyOf(f.Name)] = true
		}
	})
	var file map[string]fileValue
	if o.configFile != "" {
		var err error
		if file, err = loadConfigFile(o.configFile, known); err != nil {
			return err
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == configFlag {
			return
		}
		s := setting{flag: f.Name, key: keyOf(f.Name), env: envName(f.Name), value: f.Value, src: srcDefault}
		fv, inFile := file[s.key]
		switch {
		case explicit[f.Name]:
			s.src = srcFlag
		case getenv(s.env) != "":
			s.src = srcEnv
		case inFile:
			s.src, s.line = srcFile, fv.line
			if err := f.Value.Set(fv.value); err != nil {
				errs = append(errs, fmt.Errorf("config %s line %d: %s: invalid value %q: %s", o.configFile, fv.line, s.key, fv.value, setError(f.Value, err)))
			}
		}
		o.settings = append(o.settings, s)
	})
	return errors.Join(errs...)
}

// setError explains why a value was refused: the flag package's own
// errors say only "parse error".
func setError(v flag.Value, err error) string {
	if g, ok := v.(flag.Getter); ok {
		switch g.Get().(type) {
		case int, int64, uint, uint64:
			return "not a whole number"
		case bool:
			return "not true or false"
		}
	}
	return err.Error()
}

// setting returns the setting of the named flag.
func (o *options) setting(flagName string) setting {
	for _, s := range o.settings {
		if s.flag == flagName {
			return s
		}
	}
	return setting{flag: flagName, src: srcFlag}
}

// invalid is a validation error naming the option and where its value
// came from.
func (o *options) invalid(flagName, format string, args ...any) error {
	return fmt.Errorf("%s: %s%s", flagName, fmt.Sprintf(format, args...), o.setting(flagName).origin(o.configFile))
}

// dsnHasPassword reports whether a store DSN holds a password or another
// secret (see postgres.RedactDSN).
func dsnHasPassword(dsn string) bool {
	return redactStore(dsn) != dsn
}

// redactStore redacts every secret of a store DSN, in every form (see
// postgres.RedactDSN).
func redactStore(dsn string) string { return postgres.RedactDSN(dsn) }

// isAlias reports whether name is an alias of a seed variable.
func isAlias(name string) bool {
	for _, aliases := range server.SeedAliases {
		for _, a := range aliases {
			if a == name {
				return true
			}
		}
	}
	return false
}

// printConfig writes the effective configuration as YAML: every option
// with its source as a trailing comment, secrets shown only as set or not.
// Unless it redacts a store password, the output is itself a valid
// config file.
func printConfig(w io.Writer, o *options, getenv func(string) string) error {
	var b strings.Builder
	b.WriteString("# tokend effective configuration; precedence: flag > env > file > default\n")
	if o.configFile != "" {
		fmt.Fprintf(&b, "# config file: %s (%s)\n", o.configFile, o.configSrc)
	} else {
		b.WriteString("# config file: none (set --config or TOKEND_CONFIG)\n")
	}
	type row struct{ kv, comment string }
	rows := make([]row, 0, len(o.settings))
	width := 0
	for _, s := range o.settings {
		comment := s.src
		switch s.src {
		case srcFile:
			comment = fmt.Sprintf("file (line %d)", s.line)
		case srcEnv:
			comment = "env (" + s.env + ")"
		case srcFlag:
			comment = "flag (--" + s.flag + ")"
		}
		var v any = s.value.String()
		if g, ok := s.value.(flag.Getter); ok {
			v = g.Get()
		}
		str, isString := v.(string)
		var node yaml.Node
		switch {
		case s.flag == "store" && redactStore(str) != str:
			node.SetString(redactStore(str))
			comment += ", password redacted"
		case isString && listKeys[s.key] && str != "":
			node = yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, item := range strings.Split(str, ",") {
				var n yaml.Node
				n.SetString(strings.TrimSpace(item))
				node.Content = append(node.Content, &n)
			}
		default:
			if err := node.Encode(v); err != nil {
				return fmt.Errorf("%s: %w", s.key, err)
			}
		}
		y, err := yaml.Marshal(&node)
		if err != nil {
			return fmt.Errorf("%s: %w", s.key, err)
		}
		kv := s.key + ": " + strings.TrimSuffix(string(y), "\n")
		width = max(width, len(kv))
		rows = append(rows, row{kv, comment})
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "%-*s  # %s\n", width, r.kv, r.comment)
	}
	b.WriteString("# secrets (environment only, never read from the config file):\n")
	for _, name := range append([]string{secrets.EnvVar, "TOKEND_ADMIN_TOKEN", server.EnvAPISecret}, server.SeedAliases[server.EnvAPISecret]...) {
		state := "(not set)"
		if getenv(name) != "" {
			state = "(set, redacted)"
		} else if name != server.EnvAPISecret && isAlias(name) {
			continue // aliases only when set
		}
		fmt.Fprintf(&b, "#   %s: %s\n", name, state)
	}
	b.WriteString("# seed credentials (environment only):\n")
	type seedVar struct{ name, prefix string }
	var vars []seedVar
	for _, c := range []seedVar{{server.EnvAccountSID, "AC"}, {server.EnvAPIKey, "SK"}, {server.EnvTwiMLAppSID, "AP"}} {
		vars = append(vars, c)
		for _, alias := range server.SeedAliases[c.name] {
			if getenv(alias) != "" { // aliases only when set
				vars = append(vars, seedVar{alias, c.prefix})
			}
		}
	}
	for _, c := range vars {
		v := strings.TrimSpace(getenv(c.name))
		switch {
		case v == "":
			v = "(not set)"
		case !tokenapi.ValidSID(v, c.prefix):
			// Not shown: a misplaced secret must not be printed.
			v = "(set, not a valid " + c.prefix + " SID: not shown)"
		}
		fmt.Fprintf(&b, "#   %s: %s\n", c.name, v)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
