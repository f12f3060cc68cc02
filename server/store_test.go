package server

import (
	"strings"
	"testing"
)

func TestRedactDSN(t *testing.T) {
	for _, dsn := range []string{
		"postgres://user:hunter2@db:5432/tokend?sslmode=disable",
		"postgres://user@db/tokend?password=hunter2&sslmode=require",
		"host=db user=tokend password=hunter2 dbname=tokend",
		"host=db password='hunter2 with space' dbname=tokend",
	} {
		got := redactDSN(dsn)
		if strings.Contains(got, "hunter2") || !strings.Contains(got, "REDACTED") {
			t.Errorf("redactDSN(%q) = %q, want the password replaced by REDACTED", strings.ReplaceAll(dsn, "hunter2", "***"), got)
		}
	}
	if got := redactDSN("postgres://user@db/tokend"); got != "postgres://user@db/tokend" {
		t.Errorf("redactDSN without a password = %q, want it unchanged", got)
	}
}
