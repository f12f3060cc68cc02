package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokend/tokend/server/storage"
)

const twilioCredentialColumns = `application_sid, username, sealed_secret, master_key_id, rotate_every_seconds, updated_at`

func scanTwilioCredential(row pgx.Row) (storage.TwilioCredential, error) {
	var (
		c     storage.TwilioCredential
		every int64
	)
	if err := row.Scan(&c.ApplicationSID, &c.Username, &c.SealedSecret, &c.MasterKeyID, &every, &c.UpdatedAt); err != nil {
		return storage.TwilioCredential{}, err
	}
	c.RotateEvery, c.UpdatedAt = time.Duration(every)*time.Second, c.UpdatedAt.UTC()
	return c, nil
}

// keyShareApplication locks the application row against deletion until
// the transaction ends (as a foreign key check does), or returns
// storage.ErrNotFound.
func keyShareApplication(ctx context.Context, tx pgx.Tx, sid string) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM applications WHERE sid = $1 FOR KEY SHARE`, sid).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("application %w", storage.ErrNotFound)
	}
	return err
}

// PutTwilioCredential sets the application's provisioning credential.
func (s *Store) PutTwilioCredential(ctx context.Context, c storage.TwilioCredential) error {
	err := s.writeTx(ctx, func(tx pgx.Tx) (bool, error) {
		if err := keyShareApplication(ctx, tx, c.ApplicationSID); err != nil {
			return false, err
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO twilio_credentials (`+twilioCredentialColumns+`) VALUES ($1, $2, $3, $4, $5, `+nowSQL+`)
			ON CONFLICT (application_sid) DO UPDATE SET username = excluded.username,
				sealed_secret = excluded.sealed_secret, master_key_id = excluded.master_key_id,
				rotate_every_seconds = excluded.rotate_every_seconds, updated_at = excluded.updated_at`,
			c.ApplicationSID, c.Username, c.SealedSecret, c.MasterKeyID, int64(c.RotateEvery/time.Second))
		return false, err
	})
	if err != nil {
		return fmt.Errorf("put twilio credential of application %s: %w", c.ApplicationSID, err)
	}
	return nil
}

// GetTwilioCredential returns the application's provisioning credential.
func (s *Store) GetTwilioCredential(ctx context.Context, applicationSID string) (storage.TwilioCredential, error) {
	c, err := scanTwilioCredential(s.pool.QueryRow(ctx,
		`SELECT `+twilioCredentialColumns+` FROM twilio_credentials WHERE application_sid = $1`, applicationSID))
	if errors.Is(err, pgx.ErrNoRows) {
		err = fmt.Errorf("twilio credential %w", storage.ErrNotFound)
	}
	if err != nil {
		return storage.TwilioCredential{}, fmt.Errorf("get twilio credential of application %s: %w", applicationSID, err)
	}
	return c, nil
}

// ListTwilioCredentials returns every provisioning credential.
func (s *Store) ListTwilioCredentials(ctx context.Context) ([]storage.TwilioCredential, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+twilioCredentialColumns+` FROM twilio_credentials ORDER BY application_sid`)
	if err != nil {
		return nil, fmt.Errorf("list twilio credentials: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.TwilioCredential, error) { return scanTwilioCredential(row) })
	if err != nil {
		return nil, fmt.Errorf("list twilio credentials: %w", err)
	}
	return out, nil
}

// DeleteTwilioCredential removes the application's provisioning credential.
func (s *Store) DeleteTwilioCredential(ctx context.Context, applicationSID string) error {
	err := s.writeTx(ctx, func(tx pgx.Tx) (bool, error) {
		tag, err := tx.Exec(ctx, `DELETE FROM twilio_credentials WHERE application_sid = $1`, applicationSID)
		if err != nil {
			return false, err
		}
		if tag.RowsAffected() == 0 {
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
	err := s.writeTx(ctx, func(tx pgx.Tx) (bool, error) {
		if err := keyShareApplication(ctx, tx, op.ApplicationSID); err != nil {
			return false, err
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO key_ops (id, application_sid, op, api_key_sid, activate, created_at) VALUES ($1, $2, $3, $4, $5, `+nowSQL+`)
			ON CONFLICT (id) DO UPDATE SET application_sid = excluded.application_sid, op = excluded.op,
				api_key_sid = excluded.api_key_sid, activate = excluded.activate`,
			op.ID, op.ApplicationSID, op.Op, op.APIKeySID, op.Activate)
		return false, err
	})
	if err != nil {
		return fmt.Errorf("record key op %s: %w", op.ID, err)
	}
	return nil
}

// ListKeyOps returns every recorded intent, oldest first.
func (s *Store) ListKeyOps(ctx context.Context) ([]storage.KeyOp, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, application_sid, op, api_key_sid, activate, created_at FROM key_ops ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list key ops: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.KeyOp, error) {
		var op storage.KeyOp
		err := row.Scan(&op.ID, &op.ApplicationSID, &op.Op, &op.APIKeySID, &op.Activate, &op.CreatedAt)
		op.CreatedAt = op.CreatedAt.UTC()
		return op, err
	})
	if err != nil {
		return nil, fmt.Errorf("list key ops: %w", err)
	}
	return out, nil
}

// DeleteKeyOp removes an intent.
func (s *Store) DeleteKeyOp(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM key_ops WHERE id = $1`, id); err != nil {
		return fmt.Errorf("delete key op %s: %w", id, err)
	}
	return nil
}

// AcquireLease takes or renews a lease in one statement, against the
// database's clock: the row is taken only if holder has it or it expired.
// Two replicas racing for an expired lease serialize on the row; the loser
// sees the winner's fresh expiry and gets nothing.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	tag, err := s.pool.Exec(ctx, `
		INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond')
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leases.holder = excluded.holder OR leases.expires_at <= clock_timestamp()`,
		name, holder, ttl.Milliseconds())
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	return tag.RowsAffected() > 0, nil
}

// ReleaseLease gives up holder's lease.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM leases WHERE name = $1 AND holder = $2`, name, holder); err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}
