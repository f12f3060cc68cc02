// Package yamlpos finds the line of a YAML syntax error. yaml.v3 reports
// the line where the enclosing block starts (an indentation error on line
// 4 of a list item is reported at line 1, where the list's key is); Locate
// finds the first line at which the document stops parsing with the same
// error: the document cut after that line fails as the whole one does,
// cut before it parses (or fails otherwise).
package yamlpos

import (
	"bytes"
	"regexp"
	"strconv"

	"go.yaml.in/yaml/v3"
)

var lineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// maxLines bounds the search: it parses the document once per line.
const maxLines = 5000

// Locate returns, for a yaml.v3 error err of decoding data, the line of
// the fault, the line yaml.v3 named (where the enclosing block starts) and
// the message without its "yaml: line N: " prefix. ok is false when err
// names no line.
func Locate(data []byte, err error) (line, block int, msg string, ok bool) {
	m := lineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, 0, "", false
	}
	block, _ = strconv.Atoi(m[1])
	line = block
	if at := faultLine(data, err.Error(), block); at > block {
		line = at
	}
	return line, block, m[2], true
}

// faultLine returns the first line n >= from such that data cut after line
// n fails to parse with the error msg; 0 if there is none.
func faultLine(data []byte, msg string, from int) int {
	if bytes.Count(data, []byte("\n")) > maxLines {
		return 0
	}
	end, n := 0, 0
	for end < len(data) {
		if i := bytes.IndexByte(data[end:], '\n'); i < 0 {
			end = len(data)
		} else {
			end += i + 1
		}
		n++
		if n < from {
			continue
		}
		var node yaml.Node
		if err := yaml.Unmarshal(data[:end], &node); err != nil && err.Error() == msg {
			return n
		}
	}
	return 0
}
