package server

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/tokend/tokend/server/storage"
	"github.com/tokend/tokend/server/storage/postgres"
	"github.com/tokend/tokend/server/storage/sqlite"
)

// openStore opens the store that spec names: empty means the embedded
// SQLite store in dataDir (tokend.db); postgres:// or postgresql:// a
// PostgreSQL server shared by replicas. It returns the store and a
// description for logs that holds no password.
func openStore(ctx context.Context, spec, dataDir string) (storage.Store, string, error) {
	switch {
	case spec == "" || spec == "sqlite":
		path := filepath.Join(dataDir, "tokend.db")
		st, err := sqlite.Open(ctx, path)
		return st, "sqlite " + path, err
	case strings.HasPrefix(spec, "postgres://"), strings.HasPrefix(spec, "postgresql://"):
		st, err := postgres.Open(ctx, spec)
		return st, "postgres " + redactDSN(spec), err
	}
	return nil, "", fmt.Errorf("store: want empty (SQLite in the data dir) or a postgres:// URL")
}

// redactDSN drops the password of a URL-style DSN.
func redactDSN(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return dsn
	}
	creds := dsn[scheme+3 : at]
	if user, _, ok := strings.Cut(creds, ":"); ok {
		return dsn[:scheme+3] + user + ":REDACTED" + dsn[at:]
	}
	return dsn
}
