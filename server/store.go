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
	case strings.HasPrefix(spec, "postgres://"), strings.HasPrefix(spec, "postgresql://"), strings.Contains(spec, "="):
		st, err := postgres.Open(ctx, spec)
		return st, "postgres " + postgres.RedactDSN(spec), err
	}
	return nil, "", fmt.Errorf("store: want empty (SQLite in the data dir), a postgres:// URL or a key=value PostgreSQL connection string")
}
