package server

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestOpenStoreDescriptionRedacted: the store description that goes to
// the start-up log holds no secret, in every DSN form (the forms
// themselves are covered by postgres.TestRedactDSN). Port 1 refuses the
// connection at once.
func TestOpenStoreDescriptionRedacted(t *testing.T) {
	for _, dsn := range []string{
		"postgres://user:hunter2@127.0.0.1:1/tokend?sslmode=disable&connect_timeout=2",
		"postgres://user@127.0.0.1:1/tokend?password=hunter2&sslmode=disable&connect_timeout=2",
		"postgresql://user@127.0.0.1:1/tokend?sslmode=disable&sslpassword=hunter2&connect_timeout=2",
		"host=127.0.0.1 port=1 user=tokend password=hunter2 dbname=tokend sslmode=disable connect_timeout=2",
		"host=127.0.0.1 port=1 sslpassword='hunter2 with space' dbname=tokend sslmode=disable connect_timeout=2",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, desc, err := openStore(ctx, dsn, t.TempDir())
		cancel()
		if err == nil {
			st.Close()
		}
		if strings.Contains(desc, "hunter2") || !strings.Contains(desc, "REDACTED") {
			t.Errorf("openStore(%q) description = %q, want the password replaced by REDACTED", strings.ReplaceAll(dsn, "hunter2", "***"), desc)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("openStore(%q) error holds the password: %v", strings.ReplaceAll(dsn, "hunter2", "***"), strings.ReplaceAll(err.Error(), "hunter2", "***"))
		}
	}
}
