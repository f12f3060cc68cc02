package server

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
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
		return st, "postgres " + redactDSN(spec), err
	}
	return nil, "", fmt.Errorf("store: want empty (SQLite in the data dir), a postgres:// URL or a key=value PostgreSQL connection string")
}

// redactDSN drops every password of a DSN: in a URL's user info, in its
// query (password=…), and in key=value form.
func redactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		if u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "REDACTED")
			}
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "REDACTED")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return keywordPassword.ReplaceAllString(dsn, "${1}REDACTED")
}

// keywordPassword matches password=… in a key=value connection string,
// quoted or not.
var keywordPassword = regexp.MustCompile(`(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
