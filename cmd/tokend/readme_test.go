package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestREADMEConfigurationTable: the README's configuration table lists
// exactly the flags `tokend -h` prints, each with its environment
// variable, and the default that -h prints. A flag added without its row,
// a row left behind by a removed flag, or a changed default fails here.
func TestREADMEConfigurationTable(t *testing.T) {
	var help bytes.Buffer
	parse([]string{"--help"}, envOf(nil), &help)
	helpFlags := map[string]string{} // flag name -> default printed by -h ("" if none)
	flagLine := regexp.MustCompile(`^  -([a-z][a-z0-9-]*)(?: |$)`)
	defaultOf := regexp.MustCompile(`\(default "?([^")]*)"?\)$`)
	var last string
	for _, line := range strings.Split(help.String(), "\n") {
		if m := flagLine.FindStringSubmatch(line); m != nil {
			last = m[1]
			helpFlags[last] = ""
			continue
		}
		if last != "" && strings.HasPrefix(line, "    \t") {
			if m := defaultOf.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
				helpFlags[last] = m[1]
			}
		}
	}
	if len(helpFlags) < 10 {
		t.Fatalf("tokend -h lists only %d flags:\n%s", len(helpFlags), help.String())
	}

	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Configuration\n")
	if !ok {
		t.Fatal("README has no section Configuration")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	row := regexp.MustCompile("^\\| `--([a-z0-9-]+)` \\| `([A-Z0-9_]+)` \\| ([^|]*) \\|")
	readme := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name, env, def := m[1], m[2], m[3]
		if readme[name] {
			t.Errorf("README: --%s has two rows", name)
		}
		readme[name] = true
		helpDef, inHelp := helpFlags[name]
		if !inHelp {
			t.Errorf("README lists --%s, which tokend -h does not", name)
			continue
		}
		if want := envName(name); env != want {
			t.Errorf("README: --%s's environment variable is %s, tokend reads %s", name, env, want)
		}
		if helpDef != "" && !strings.Contains(def, "`"+helpDef+"`") && !sameDuration(def, helpDef) {
			t.Errorf("README: --%s's default is %q, tokend -h says %q", name, strings.TrimSpace(def), helpDef)
		}
	}
	for name := range helpFlags {
		if !readme[name] {
			t.Errorf("tokend -h lists --%s, which the README's configuration table does not", name)
		}
	}
}

// TestREADMEConfigFile: the README's example config file is one tokend
// reads: every key known, every value valid.
func TestREADMEConfigFile(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)\\*\\*The config file\\*\\* \\(`--config`\\) is one YAML mapping of option keys:\n\n```yaml\n(.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatal("README has no example config file under **The config file**")
	}
	dir := t.TempDir()
	policy := dir + "/policy.yaml"
	if err := os.WriteFile(policy, []byte("rules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := dir + "/tokend.yaml"
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(string(m[1]), "/etc/tokend/policy.yaml", policy)), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parse([]string{"--config", cfg}, envOf(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatalf("the README's config file: %v", err)
	}
	fromFile := 0
	for _, s := range o.settings {
		if s.src == srcFile {
			fromFile++
		}
	}
	if fromFile < 5 {
		t.Errorf("only %d settings came from the README's config file", fromFile)
	}
	if _, err := parseDefaultGrants(o.defaultGrantsRaw); err != nil {
		t.Errorf("the README's default_grants: %v", err)
	}
}

// sameDuration reports whether the README's default (`1m`) is the
// duration tokend -h prints (1m0s).
func sameDuration(readmeDef, helpDef string) bool {
	want, err := time.ParseDuration(helpDef)
	if err != nil {
		return false
	}
	first, _, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(readmeDef), "`"), "`")
	if !ok {
		return false
	}
	got, err := time.ParseDuration(first)
	return err == nil && got == want
}
