package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// fieldAtError returns the field (snake_case, dotted when nested) whose
// value sits where protojson's error msg says it refused one ("invalid
// google.protobuf.Duration value", "unexpected token" at line L, column
// C), in the body limitBody read; "" when msg is not such an error or the
// body is not at hand. protojson names the position, not the field.
func fieldAtError(r *http.Request, msg string) string {
	m := reLineCol.FindStringSubmatch(msg)
	if m == nil {
		return ""
	}
	rb, ok := r.Body.(*readBody)
	if !ok {
		return ""
	}
	line, _ := strconv.Atoi(m[1])
	col, _ := strconv.Atoi(m[2])
	off := offsetOf(rb.body, line, col)
	if off < 0 {
		return ""
	}
	return jsonFieldAt(rb.body, off)
}

// offsetOf turns protojson's 1-based line and column (in runes) into a
// byte offset in b; -1 when b has no such position.
func offsetOf(b []byte, line, col int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return -1
		}
		off += i + 1
	}
	for c := 1; c < col; c++ {
		if off >= len(b) || b[off] == '\n' {
			return -1
		}
		_, n := utf8.DecodeRune(b[off:])
		off += n
	}
	return off
}

// jsonFieldAt returns the path of object keys leading to the value that
// starts at byte offset off of body (array elements add no name), "" when
// no value starts there.
func jsonFieldAt(body []byte, off int) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	type frame struct {
		obj       bool
		key       string
		expectKey bool
	}
	var stack []frame
	path := func() string {
		var parts []string
		for _, f := range stack {
			if f.obj && f.key != "" {
				parts = append(parts, snakeCase(f.key))
			}
		}
		return strings.Join(parts, ".")
	}
	for {
		start := skipSpace(body, int(dec.InputOffset()))
		tok, err := dec.Token()
		if err != nil {
			// The refused value may be what the decoder stops at too
			// (a malformed token): it is the next one after the key.
			if start == off && len(stack) > 0 && stack[len(stack)-1].obj && !stack[len(stack)-1].expectKey {
				return path()
			}
			return ""
		}
		top := len(stack) - 1
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if start == off {
					return path()
				}
				stack = append(stack, frame{obj: d == '{', expectKey: d == '{'})
			case '}', ']':
				stack = stack[:top]
				if top > 0 && stack[top-1].obj {
					stack[top-1].expectKey = true
				}
			}
			continue
		}
		if top >= 0 && stack[top].obj && stack[top].expectKey {
			stack[top].key, stack[top].expectKey = tok.(string), false
			continue
		}
		if start == off {
			return path()
		}
		if top >= 0 && stack[top].obj {
			stack[top].expectKey = true
		}
	}
}

// skipSpace returns the offset of the first byte from i on that is not
// JSON whitespace, a colon or a comma (what separates tokens).
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n', ':', ',':
			i++
		default:
			return i
		}
	}
	return i
}

// wellKnownRule is the rule of a well-known type protojson refused a value
// for, to follow its message; "" for others.
func wellKnownRule(detail string) string {
	switch {
	case strings.Contains(detail, "google.protobuf.Duration"):
		return `: a duration is a string of seconds with an "s" suffix, such as "3600s" or "2592000s" (30 days)`
	case strings.Contains(detail, "google.protobuf.Timestamp"):
		return `: a timestamp is an RFC 3339 string, such as "2026-01-02T15:04:05Z"`
	}
	return ""
}
