package yamlpos

import (
	"errors"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestLocate(t *testing.T) {
	for _, tc := range []struct {
		name, doc   string
		line, block int
	}{
		{"indentation on line 4", "rules:\n  - name: a\n    principals: [x]\n   applications: [y]\n    identities: {self: true}\n", 4, 1},
		{"list item indented less", "cors_origins:\n  - https://a.example\n - https://b.example\n", 3, 2},
		{"tab on line 3", "rules:\n  - name: a\n\tprincipals: [x]\n", 3, 2},
		{"unclosed mapping on line 3", "a:\n  b: 1\n  c: {d: 1\n  e: 2\n", 3, 0},
		{"fault on the named line", "a: 1\nb: 2\n  c: 3\n", 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n yaml.Node
			err := yaml.Unmarshal([]byte(tc.doc), &n)
			if err == nil {
				t.Fatal("the document parses: the case is wrong")
			}
			line, block, msg, ok := Locate([]byte(tc.doc), err)
			if !ok || line != tc.line || (tc.block != 0 && block != tc.block) || msg == "" {
				t.Errorf("Locate = line %d, block %d, %q, %v; want line %d, block %d (yaml.v3 said %v)", line, block, msg, ok, tc.line, tc.block, err)
			}
		})
	}
	if _, _, _, ok := Locate(nil, errors.New("not a yaml error")); ok {
		t.Error("Locate of an error without a line: ok")
	}
}
