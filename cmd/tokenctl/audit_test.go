package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/server/audit"
)

// jwtWithJTI is a JWT-shaped token whose claims carry jti (the signature
// is not checked by audit find).
func jwtWithJTI(jti string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"HS256","typ":"JWT","cty":"twilio-fpa;v=1"}`)) + "." +
		enc([]byte(fmt.Sprintf(`{"jti":%q,"iss":"%s","sub":"%s","exp":1}`, jti, keySID, accountSID))) + "." + enc([]byte("signature-not-checked"))
}

// writeAuditFiles writes mint records through tokend's audit writer,
// rotating by size, then compresses the oldest rotated file as logrotate's
// compress would, and adds a dated, compressed file. It returns the
// audit log's path and the jti of each record by where it ended up.
func writeAuditFiles(t *testing.T) (path string, jtis map[string]string) {
	t.Helper()
	dir := t.TempDir()
	path = filepath.Join(dir, "audit.log")
	l, err := audit.Open(path, audit.WithRotation(4096, 10))
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	base := time.Date(2026, 12, 4, 5, 0, 0, 0, time.UTC)
	for i := range 40 {
		jti := fmt.Sprintf("%s-%016x", keySID, i)
		all = append(all, jti)
		l.Log(audit.Record{
			Time: base.Add(time.Duration(i) * time.Second), Event: audit.EventMint, Principal: "billing", PrincipalKind: "credential",
			Identity: fmt.Sprintf("agent_%d", i), ApplicationSID: appSID, Grants: "voice:outgoing", JTI: jti,
			Exp: base.Add(time.Hour), Decision: audit.Allow, Rule: "backend-voice", ClientAddr: "10.1.2.3:4567", RequestID: fmt.Sprint("req-", i), Code: "OK",
		})
		l.Flush()
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Compress audit.log.2 into audit.log.2.gz.
	gzipFile(t, path+".2")
	// A dated file of logrotate's dateext, compressed, with a torn line.
	old := filepath.Join(dir, "audit.log-20261203")
	os.WriteFile(old, []byte(`{"time":"2026-12-03T10:00:00Z","event":"mint","identity":"yesterday","jti":"SKold-1","code":"OK"}`+"\n"+`{"time":"2026-12-03T10:00:01Z","ev`+"\n"), 0o600)
	gzipFile(t, old)

	jtis = map[string]string{"dated": "SKold-1"}
	for _, f := range []string{path, path + ".1", path + ".2.gz"} {
		for _, jti := range all {
			if fileHas(t, f, jti) {
				jtis[filepath.Base(f)] = jti
				break
			}
		}
	}
	if len(jtis) != 4 {
		t.Fatalf("records by file = %v; want one in each", jtis)
	}
	return path, jtis
}

func gzipFile(t *testing.T, name string) {
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	zw.Close()
	if err := os.WriteFile(name+".gz", b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(name)
}

func fileHas(t *testing.T, name, s string) bool {
	recs, _, err := searchAuditFile(name, s)
	if err != nil {
		t.Fatal(err)
	}
	return len(recs) > 0
}

func TestAuditFind(t *testing.T) {
	path, jtis := writeAuditFiles(t)
	for _, tc := range []struct {
		name    string
		args    []string
		stdin   string
		want    []string // in stdout
		wantErr string
	}{
		{name: "current_file", args: []string{"--jti", jtis["audit.log"]}, want: []string{jtis["audit.log"], "billing (credential)", appSID, "10.1.2.3:4567", "allow (rule backend-voice)", "audit.log line "}},
		{name: "rotated_file", args: []string{"--jti", jtis["audit.log.1"]}, want: []string{jtis["audit.log.1"], "audit.log.1 line "}},
		{name: "rotated_gzip", args: []string{"--jti", jtis["audit.log.2.gz"]}, want: []string{jtis["audit.log.2.gz"], "audit.log.2.gz line "}},
		{name: "dated_gzip", args: []string{"--jti", "SKold-1"}, want: []string{"yesterday", "2026-12-03T10:00:00Z", "audit.log-20261203.gz line 1"}},
		{name: "whole_token", args: []string{"--jti", jwtWithJTI(jtis["audit.log.1"])}, want: []string{jtis["audit.log.1"]}},
		{name: "token_on_stdin", args: []string{"--jti", "-"}, stdin: jwtWithJTI(jtis["audit.log.2.gz"]) + "\n", want: []string{jtis["audit.log.2.gz"]}},
		{name: "explicit_file", args: []string{"--jti", jtis["audit.log"], path}, want: []string{jtis["audit.log"]}},
		{name: "explicit_file_without_it", args: []string{"--jti", jtis["audit.log"], path + ".1"}, wantErr: "no audit record of jti " + jtis["audit.log"] + " in 1 files"},
		{name: "not_found", args: []string{"--jti", "SKnope-1"}, wantErr: "no audit record of jti SKnope-1 in 5 files"},
		{name: "no_jti", args: nil, wantErr: "--jti: required"},
		{name: "bad_jti", args: []string{"--jti", "two words"}, wantErr: "--jti: not a jti"},
		{name: "token_without_jti", args: []string{"--jti", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}, wantErr: "--jti: the token has no jti claim"},
		{name: "token_bad_claims", args: []string{"--jti", "eyJhbGciOiJIUzI1NiJ9.!!!secret-part!!!.c2ln"}, wantErr: "--jti: the token's claims are not base64url"},
		{name: "missing_log", args: []string{"--jti", "SKx-1", "--audit-log", filepath.Join(t.TempDir(), "audit.log")}, wantErr: "no file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"audit", "find", "--audit-log", path}, tc.args...)
			err := run(context.Background(), args, noEnv, strings.NewReader(tc.stdin), &stdout, &stderr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("audit find %v = %v; want an error containing %q", tc.args, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "secret-part") {
					t.Errorf("the error holds the token: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("audit find %v = %v (stderr %s)", tc.args, err, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, stdout.String())
				}
			}
			if n := strings.Count(stdout.String(), "minted at"); n != 1 {
				t.Errorf("%d records printed; want 1:\n%s", n, stdout.String())
			}
		})
	}
}

func TestAuditFindJSON(t *testing.T) {
	path, jtis := writeAuditFiles(t)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"--json", "audit", "find", "--audit-log", path, "--jti", jtis["audit.log.2.gz"]}, noEnv, strings.NewReader(""), &stdout, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	var rec audit.Record
	if err := json.Unmarshal(stdout.Bytes(), &rec); err != nil {
		t.Fatalf("--json output %q: %v", stdout.String(), err)
	}
	if rec.JTI != jtis["audit.log.2.gz"] || rec.Identity == "" || rec.ClientAddr != "10.1.2.3:4567" {
		t.Errorf("record = %+v", rec)
	}
	// The dated file's torn line is reported, not fatal.
	stderr.Reset()
	if err := run(context.Background(), []string{"audit", "find", "--audit-log", path, "--jti", "SKold-1"}, noEnv, strings.NewReader(""), &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "skipped 1 lines") {
		t.Errorf("stderr = %q; want the torn line reported", stderr.String())
	}
}

func noEnv(string) string { return "" }

// TestAuditFindUnreadableFile: a rotated file that cannot be read to its
// end (a gzip cut short, as by a full disk or a logrotate still
// compressing) is reported on stderr and the other files are searched
// all the same; with nothing found, the error says which files were not
// read whole and lists only the first of many files.
func TestAuditFindUnreadableFile(t *testing.T) {
	path, jtis := writeAuditFiles(t)
	// audit.log.3.gz: the first bytes of a gzip'd file.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	for i := range 200 {
		fmt.Fprintf(zw, `{"time":"2026-12-04T04:00:00Z","event":"mint","jti":"SKcut-%d"}`+"\n", i)
	}
	zw.Close()
	if err := os.WriteFile(path+".3.gz", gz.Bytes()[:gz.Len()/2], 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, jti string
		wantErr   string // empty: found
	}{
		{"in_current_file", jtis["audit.log"], ""},
		{"in_gzip", jtis["audit.log.2.gz"], ""},
		{"not_found", "SKnope-1", "1 of them could not be read to the end (" + path + ".3.gz)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), []string{"audit", "find", "--audit-log", path, "--jti", tc.jti}, noEnv, strings.NewReader(""), &stdout, &stderr)
			if tc.wantErr == "" {
				if err != nil || !strings.Contains(stdout.String(), tc.jti) {
					t.Fatalf("audit find %s = %v, stdout %q; want its record", tc.jti, err, stdout.String())
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("audit find %s = %v; want an error containing %q", tc.jti, err, tc.wantErr)
			}
			if !strings.Contains(stderr.String(), "audit.log.3.gz line") || !strings.Contains(stderr.String(), "not searched") {
				t.Errorf("stderr = %q; want the cut gzip reported", stderr.String())
			}
		})
	}

	// Thousands of rotated files: searched, and named only in part.
	for i := 4; i < 2000; i++ {
		if err := os.WriteFile(fmt.Sprintf("%s.%d", path, i), []byte(`{"event":"mint","jti":"SKother-1"}`+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"audit", "find", "--audit-log", path, "--jti", "SKnope-2"}, noEnv, strings.NewReader(""), &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "in 2002 files (") || !strings.Contains(err.Error(), " and 1997 more)") || len(err.Error()) > 1000 {
		t.Errorf("audit find in 2002 files = %v; want the count and the first few files named", err)
	}
	err = run(context.Background(), []string{"audit", "find", "--audit-log", path, "--jti", jtis["audit.log.1"]}, noEnv, strings.NewReader(""), &stdout, &stderr)
	if err != nil || !strings.Contains(stdout.String(), jtis["audit.log.1"]) {
		t.Errorf("audit find among 2002 files = %v; want its record", err)
	}
}
