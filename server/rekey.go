package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tokend/tokend/server/keystore"
	"github.com/tokend/tokend/server/provision"
	"github.com/tokend/tokend/server/secrets"
)

// Rekey re-encrypts every secret in the store under the primary master
// key. With generate, it first creates a new master key, writes the
// keyring file with the new key first and the old keys after (so a running
// tokend reading the same file picks it up), and makes it primary. A
// keyring from TOKEND_MASTER_KEY cannot be rewritten: put the new key
// first in the variable instead (tokend keygen prints one). It returns how
// many secrets were resealed and the primary key ID.
func Rekey(ctx context.Context, cfg Config, generate bool) (int, string, error) {
	kr, source, _, err := secrets.Load(cfg.MasterKey, cfg.MasterKeyFile, cfg.DataDir)
	if err != nil {
		return 0, "", fmt.Errorf("master key: %w", err)
	}
	if generate {
		if cfg.MasterKey != "" {
			return 0, "", fmt.Errorf("the keyring comes from %s, which tokend cannot rewrite: put a new key (tokend keygen) first in it, keep the old ones after it, restart, then rekey without --generate", secrets.EnvVar)
		}
		mk, err := secrets.GenerateMasterKey()
		if err != nil {
			return 0, "", err
		}
		if kr, err = kr.WithPrimary(mk); err != nil {
			return 0, "", err
		}
		path := cfg.MasterKeyFile
		if path == "" {
			path = filepath.Join(cfg.DataDir, secrets.DataDirKeyFile)
		}
		if err := writeKeyFile(path, kr.Encode()); err != nil {
			return 0, "", err
		}
		source = "file " + path
	}
	st, _, err := openStore(ctx, cfg.Store, cfg.DataDir)
	if err != nil {
		return 0, "", fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	ks := keystore.New(st, kr, cfg.Logger)
	n, err := ks.Rekey(ctx)
	if err != nil {
		return 0, "", fmt.Errorf("rekey (keyring from %s): %w", source, err)
	}
	// Provisioning credentials are sealed too (Rekey never calls Twilio).
	m, err := provision.New(provision.Config{Keys: ks, Logger: cfg.Logger}).Rekey(ctx)
	if err != nil {
		return n, "", fmt.Errorf("rekey provisioning credentials (keyring from %s): %w", source, err)
	}
	return n + m, kr.Primary().ID, nil
}

// writeKeyFile replaces path atomically with text, mode 0600.
func writeKeyFile(path, text string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".master.key-*")
	if err != nil {
		return fmt.Errorf("write keyring file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write keyring file: %w", err)
	}
	if _, err := tmp.WriteString(text); err != nil {
		tmp.Close()
		return fmt.Errorf("write keyring file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write keyring file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write keyring file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write keyring file: %w", err)
	}
	return nil
}
