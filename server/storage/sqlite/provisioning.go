package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tokend/tokend/server/storage"
)

const twilioCredentialColumns = `application_sid, username, sealed_secret, master_key_id, rotate_every_seconds, updated_at`

func scanTwilioCredential(row scanner) (storage.TwilioCredential, error) {
	var (
		c          storage.TwilioCredential
		every, upd int64
	)
	if err := row.Scan(&c.ApplicationSID, &c.Username, &c.SealedSecret, &c.MasterKeyID, &every, &upd); err != nil {
		return storage.TwilioCredential{}, err
	}
	c.RotateEvery, c.UpdatedAt = time.Duration(every)*time.Second, fromMillis(upd)
	return c, nil
}

// PutTwilioCredential sets the application's provisioning credential.
func (s *Store) PutTwilioCredential(ctx context.Context, c storage.TwilioCredential) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		if err := applicationExists(ctx, tx, c.ApplicationSID); err != nil {
			return false, err
		}
		_, err := tx.ExecContext(ctx, `
			INSERT INTO twilio_credentials (`+twilioCredentialColumns+`) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (application_sid) DO UPDATE SET username = excluded.username,
				sealed_secret = excluded.sealed_secret, master_key_id = excluded.master_key_id,
				rotate_every_seconds = excluded.rotate_every_seconds, updated_at = excluded.updated_at`,
			c.ApplicationSID, c.Username, c.SealedSecret, c.MasterKeyID, int64(c.RotateEvery/time.Second), millis(time.Now()))
		return false, err
	})
	if err != nil {
		return fmt.Errorf("put twilio credential of application %s: %w", c.ApplicationSID, err)
	}
	return nil
}

// GetTwilioCredential returns the application's provisioning credential.
func (s *Store) GetTwilioCredential(ctx context.Context, applicationSID string) (storage.TwilioCredential, error) {
	c, err := scanTwilioCredential(s.read.QueryRowContext(ctx,
		`SELECT `+twilioCredentialColumns+` FROM twilio_credentials WHERE application_sid = ?`, applicationSID))
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("twilio credential %w", storage.ErrNotFound)
	}
	if err != nil {
		return storage.TwilioCredential{}, fmt.Errorf("get twilio credential of application %s: %w", applicationSID, err)
	}
	return c, nil
}

// ListTwilioCredentials returns every provisioning credential.
func (s *Store) ListTwilioCredentials(ctx context.Context) ([]storage.TwilioCredential, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+twilioCredentialColumns+` FROM twilio_credentials ORDER BY application_sid`)
	if err != nil {
		return nil, fmt.Errorf("list twilio credentials: %w", err)
	}
	defer rows.Close()
	var out []storage.TwilioCredential
	for rows.Next() {
		c, err := scanTwilioCredential(rows)
		if err != nil {
			return nil, fmt.Errorf("list twilio credentials: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list twilio credentials: %w", err)
	}
	return out, nil
}

// DeleteTwilioCredential removes the application's provisioning credential.
func (s *Store) DeleteTwilioCredential(ctx context.Context, applicationSID string) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		res, err := tx.ExecContext(ctx, `DELETE FROM twilio_credentials WHERE application_sid = ?`, applicationSID)
		if err != nil {
			return false, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return false, err
		} else if n == 0 {
			return false, fmt.Errorf("twilio credential %w", storage.ErrNotFound)
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("delete twilio credential of application %s: %w", applicationSID, err)
	}
	return nil
}

// PutKeyOp records an intent.
func (s *Store) PutKeyOp(ctx context.Context, op storage.KeyOp) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		if err := applicationExists(ctx, tx, op.ApplicationSID); err != nil {
			return false, err
		}
		_, err := tx.ExecContext(ctx, `
			INSERT INTO key_ops (id, application_sid, op, api_key_sid, activate, created_at) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET application_sid = excluded.application_sid, op = excluded.op,
				api_key_sid = excluded.api_key_sid, activate = excluded.activate`,
			op.ID, op.ApplicationSID, op.Op, op.APIKeySID, op.Activate, millis(time.Now()))
		return false, err
	})
	if err != nil {
		return fmt.Errorf("record key op %s: %w", op.ID, err)
	}
	return nil
}

// ListKeyOps returns every recorded intent, oldest first.
func (s *Store) ListKeyOps(ctx context.Context) ([]storage.KeyOp, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id, application_sid, op, api_key_sid, activate, created_at FROM key_ops ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list key ops: %w", err)
	}
	defer rows.Close()
	var out []storage.KeyOp
	for rows.Next() {
		var (
			op      storage.KeyOp
			created int64
		)
		if err := rows.Scan(&op.ID, &op.ApplicationSID, &op.Op, &op.APIKeySID, &op.Activate, &created); err != nil {
			return nil, fmt.Errorf("list key ops: %w", err)
		}
		op.CreatedAt = fromMillis(created)
		out = append(out, op)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list key ops: %w", err)
	}
	return out, nil
}

// DeleteKeyOp removes an intent.
func (s *Store) DeleteKeyOp(ctx context.Context, id string) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		_, err := tx.ExecContext(ctx, `DELETE FROM key_ops WHERE id = ?`, id)
		return false, err
	})
	if err != nil {
		return fmt.Errorf("delete key op %s: %w", id, err)
	}
	return nil
}

// AcquireLease takes or renews a lease. SQLite serves one host, but
// several processes may share the file: the write transaction makes the
// check and the take one step.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	var got bool
	err := s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		now := time.Now()
		res, err := tx.ExecContext(ctx, `
			INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
			WHERE leases.holder = excluded.holder OR leases.expires_at <= ?`,
			name, holder, millis(now.Add(ttl)), millis(now))
		if err != nil {
			return false, err
		}
		n, err := res.RowsAffected()
		got = n > 0
		return false, err
	})
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	return got, nil
}

// ReleaseLease gives up holder's lease.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		_, err := tx.ExecContext(ctx, `DELETE FROM leases WHERE name = ? AND holder = ?`, name, holder)
		return false, err
	})
	if err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}
