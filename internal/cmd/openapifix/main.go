// Command openapifix completes the OpenAPI document protoc-gen-openapiv2
// writes (gen/openapi/tokend.swagger.json) with what its options cannot
// express; `make generate` and `make check-generate` run it after buf:
//
//   - the body of POST /token is optional (an empty body mints with every
//     default), where the generator marks every body required;
//   - a map query parameter is named name[KEY] with a description saying
//     how to write one entry, where the generator names it after the
//     key's type (grants.voice.outgoing.params[string]);
//   - GET /token does not list the answers only a body can cause (413,
//     415), which the Mint method's options give both of its bindings.
//
// It edits the text in place, keeping the generator's layout, and fails
// when the text it expects is not there exactly once, so that a new
// generator version cannot make it silently do nothing.
package main

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
)

var (
	// The /token path, up to the next path (or the end).
	tokenPath = regexp.MustCompile(`(?m)^(\s*)"/token": \{$`)
	// A required body parameter (in /token, only POST has one).
	requiredBody = regexp.MustCompile(`("in": "body",\s*"required": )true`)
	// A map query parameter and its description.
	mapParam = regexp.MustCompile(`"name": "([a-z_.]+)\[string\]",(\s*)"description": "`)
)

func fix(doc []byte) ([]byte, error) {
	m := tokenPath.FindSubmatchIndex(doc)
	if m == nil {
		return nil, fmt.Errorf("no /token path")
	}
	start, indent := m[1], doc[m[2]:m[3]]
	end := len(doc)
	if i := bytes.Index(doc[start:], append(append([]byte("\n"), indent...), '}')); i >= 0 {
		end = start + i
	}
	seg := doc[start:end]
	if n := len(requiredBody.FindAllIndex(seg, -1)); n != 1 {
		return nil, fmt.Errorf("the required body parameter of /token: found %d, want 1", n)
	}
	seg = requiredBody.ReplaceAll(seg, []byte("${1}false"))
	for _, code := range []string{"413", "415"} {
		var err error
		if seg, err = dropGetResponse(seg, code); err != nil {
			return nil, fmt.Errorf("GET /token: %v", err)
		}
	}
	doc = append(append(append([]byte{}, doc[:start]...), seg...), doc[end:]...)
	if n := len(mapParam.FindAllIndex(doc, -1)); n == 0 {
		return nil, fmt.Errorf("no map query parameter (name[string]): the generator changed, check the document")
	}
	doc = mapParam.ReplaceAll(doc, []byte(`"name": "${1}[KEY]",${2}"description": "One query parameter per entry, the entry's key in the brackets: ${1}[To]=alice. `))
	return doc, nil
}

// getOp opens a GET operation.
var getOp = regexp.MustCompile(`"get": \{`)

// dropGetResponse removes the response code from the get operation in seg
// (its object and the line it is on), keeping the JSON valid.
func dropGetResponse(seg []byte, code string) ([]byte, error) {
	loc := getOp.FindIndex(seg)
	if loc == nil {
		return nil, fmt.Errorf("no get operation")
	}
	opEnd := closing(seg, loc[1]-1)
	if opEnd < 0 {
		return nil, fmt.Errorf("unbalanced get operation")
	}
	op := seg[loc[1]:opEnd]
	key := []byte(`"` + code + `": {`)
	if bytes.Count(op, key) != 1 {
		return nil, fmt.Errorf("response %s: found %d, want 1", code, bytes.Count(op, key))
	}
	start := loc[1] + bytes.Index(op, key)
	end := closing(seg, start+len(key)-1)
	if end < 0 {
		return nil, fmt.Errorf("response %s: unbalanced", code)
	}
	end++ // past the closing brace
	// Take the whole lines: from the start of the key's line to the end of
	// the closing brace's line, with its comma. The generator sorts the
	// codes, so a following entry (429 or default) keeps the JSON valid.
	lineStart := bytes.LastIndexByte(seg[:start], '\n') + 1
	if end < len(seg) && seg[end] == ',' {
		end++
	} else {
		return nil, fmt.Errorf("response %s is the last of its object", code)
	}
	if end < len(seg) && seg[end] == '\n' {
		end++
	}
	return append(append([]byte{}, seg[:lineStart]...), seg[end:]...), nil
}

// closing returns the index of the brace that closes the one at open,
// skipping strings; -1 if there is none.
func closing(b []byte, open int) int {
	depth, inString := 0, false
	for i := open; i < len(b); i++ {
		c := b[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{':
			depth++
		case c == '}':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: openapifix gen/openapi/tokend.swagger.json")
		os.Exit(2)
	}
	name := os.Args[1]
	doc, err := os.ReadFile(name)
	if err != nil {
		fmt.Fprintln(os.Stderr, "openapifix:", err)
		os.Exit(1)
	}
	out, err := fix(doc)
	if err != nil {
		fmt.Fprintf(os.Stderr, "openapifix: %s: %v\n", name, err)
		os.Exit(1)
	}
	if bytes.Equal(out, doc) {
		return
	}
	if err := os.WriteFile(name, out, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "openapifix:", err)
		os.Exit(1)
	}
}
