package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/tokend/tokend/server/audit"
)

// defineAuditFind is `tokenctl audit find`: it reads tokend's audit files
// (no call to tokend: an operator holding a leaked token may find its
// origin even with tokend down) and prints the records of one token.
func defineAuditFind(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	def := c.getenv("TOKEND_AUDIT_LOG")
	if def == "" || def == "off" || auditStreams[def] {
		def = filepath.Join("data", "audit.log")
	}
	logPath := fs.String("audit-log", def, "tokend's audit file at `path`; its rotated files (path.1, path.2.gz, path-20261204.gz, ...) are read too (env TOKEND_AUDIT_LOG)")
	jti := fs.String("jti", "", "the token's id (its jti claim), or the whole token, or - to read either from stdin (better for a token: it is a bearer credential)")
	return func(ctx context.Context, args []string) error {
		const cmd = "audit find"
		id, err := c.resolveJTI(ctx, *jti)
		if err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		files := args
		if len(files) == 0 {
			if files, err = auditFiles(*logPath); err != nil {
				return fmt.Errorf("%s: %w", cmd, err)
			}
		}
		var found []foundRecord
		var skipped int
		var unread []string // files not read to their end
		for _, f := range files {
			// A file that cannot be read whole (a gzip cut short by a full
			// disk or being written by logrotate, no permission) is
			// reported, and the others are searched all the same: the
			// record may well be in one of them.
			recs, bad, err := searchAuditFile(f, id)
			if err != nil {
				fmt.Fprintf(c.stderr, "tokenctl: %s: %v (records after it in that file not searched)\n", cmd, err)
				unread = append(unread, f)
			}
			found = append(found, recs...)
			skipped += bad
		}
		if skipped > 0 {
			fmt.Fprintf(c.stderr, "tokenctl: %s: skipped %d lines that are no audit record (torn or foreign)\n", cmd, skipped)
		}
		if len(found) == 0 {
			msg := fmt.Sprintf("%s: no audit record of jti %s in %d files (%s)", cmd, cell(id), len(files), fileList(files))
			if len(unread) > 0 {
				msg += fmt.Sprintf("; %d of them could not be read to the end (%s)", len(unread), fileList(unread))
			}
			return errors.New(msg)
		}
		sort.SliceStable(found, func(i, j int) bool { return found[i].rec.Time.Before(found[j].rec.Time) })
		if c.json {
			for _, f := range found {
				if _, err := fmt.Fprintf(c.stdout, "%s\n", f.raw); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 8, 2, ' ', 0)
		for i, f := range found {
			if i > 0 {
				fmt.Fprintln(tw)
			}
			auditDetail(tw, f)
		}
		return tw.Flush()
	}
}

// fileList names files for a message: all of a few, the first of many
// (a directory may hold thousands of rotated files).
func fileList(files []string) string {
	const most = 5
	if len(files) <= most {
		return strings.Join(files, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(files[:most], ", "), len(files)-most)
}

// auditStreams are --audit-log values of tokend that are no file.
var auditStreams = map[string]bool{"-": true, "stderr": true, "stdout": true}

// resolveJTI returns the jti that v gives: v itself, or the jti claim of
// the token v is, reading v from stdin when it is "-". Errors never hold
// the token.
func (c *cli) resolveJTI(ctx context.Context, v string) (string, error) {
	if v == "-" {
		b, err := io.ReadAll(io.LimitReader(c.stdin, 64<<10))
		if err != nil {
			return "", fmt.Errorf("read stdin: %w", err)
		}
		v = string(b)
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return "", errors.New("--jti: required: the token's jti, or the token itself (on stdin with --jti -)")
	}
	if strings.Count(v, ".") == 2 {
		return jtiOfToken(v)
	}
	if len(v) > 256 || strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return "", errors.New("--jti: not a jti (at most 256 characters, no spaces) nor a token (three dot-separated parts)")
	}
	return v, nil
}

// jtiOfToken reads the jti claim of a JWT without verifying it: a leaked
// token may be expired or signed by a key since deleted, and its record
// is what is looked for.
func jtiOfToken(tok string) (string, error) {
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", errors.New("--jti: the token's claims are not base64url")
	}
	var claims struct {
		JTI string `json:"jti"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", errors.New("--jti: the token's claims are not JSON")
	}
	if claims.JTI == "" {
		return "", errors.New("--jti: the token has no jti claim")
	}
	return claims.JTI, nil
}

// auditFiles lists the audit file at path and its rotated files: those in
// its directory whose name is path's followed by "." or "-" (tokend's
// path.N, logrotate's path.N.gz or path-DATE), oldest name last.
func auditFiles(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	var files []string
	for _, e := range entries {
		n := e.Name()
		if !e.Type().IsRegular() || !(n == base || strings.HasPrefix(n, base+".") || strings.HasPrefix(n, base+"-")) {
			continue
		}
		files = append(files, filepath.Join(dir, n))
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("audit log: no file %s nor rotated files next to it (set --audit-log)", path)
	}
	slices.Sort(files)
	return files, nil
}

// foundRecord is a matching record and where it was.
type foundRecord struct {
	rec  audit.Record
	raw  []byte
	file string
	line int
}

// searchAuditFile returns the records of jti in the file at path, read
// through gzip when it is compressed, and how many lines were no record.
func searchAuditFile(path, jti string) ([]foundRecord, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	needle := []byte(jti) // cheap test before decoding
	var out []foundRecord
	bad, n := 0, 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if !bytes.Contains(line, needle) {
			if len(line) > 0 && (line[0] != '{' || line[len(line)-1] != '}') {
				bad++
			}
			continue
		}
		var rec audit.Record
		if err := json.Unmarshal(line, &rec); err != nil {
			bad++
			continue
		}
		if rec.JTI == jti {
			out = append(out, foundRecord{rec: rec, raw: slices.Clone(line), file: path, line: n})
		}
	}
	if err := sc.Err(); err != nil {
		return out, bad, fmt.Errorf("%s line %d: %w", path, n+1, err)
	}
	return out, bad, nil
}

func auditDetail(w io.Writer, f foundRecord) {
	r := f.rec
	when := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	decision := cell(r.Decision)
	if r.Rule != "" {
		decision += " (rule " + cell(r.Rule) + ")"
	}
	principal := cell(r.Principal)
	if r.PrincipalKind != "" {
		principal += " (" + cell(r.PrincipalKind) + ")"
	}
	for _, row := range [][2]string{
		{"minted at", when(r.Time)},
		{"event", cell(r.Event)},
		{"decision", decision},
		{"code", cell(r.Code)},
		{"minted by", principal},
		{"identity", cell(r.Identity)},
		{"application", cell(r.ApplicationSID)},
		{"grants", cell(r.Grants)},
		{"expires", when(r.Exp)},
		{"client address", cell(r.ClientAddr)},
		{"request id", cell(r.RequestID)},
		{"jti", cell(r.JTI)},
		{"record", fmt.Sprintf("%s line %d", f.file, f.line)},
	} {
		fmt.Fprintf(w, "%s\t%s\n", row[0], row[1])
	}
}
