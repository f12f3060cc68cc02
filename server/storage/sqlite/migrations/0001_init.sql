-- Applications tokend mints tokens for.
CREATE TABLE applications (
	sid             TEXT    NOT NULL PRIMARY KEY,
	account_sid     TEXT    NOT NULL,
	friendly_name   TEXT    NOT NULL,
	default_grants  BLOB    NOT NULL,
	max_ttl_seconds INTEGER NOT NULL,
	region          TEXT    NOT NULL,
	created_at      INTEGER NOT NULL, -- unix milliseconds, UTC
	updated_at      INTEGER NOT NULL  -- unix milliseconds, UTC
) STRICT;

-- Signing keys; the same API key SID may serve several applications.
CREATE TABLE keys (
	application_sid   TEXT    NOT NULL REFERENCES applications (sid) ON DELETE CASCADE,
	sid               TEXT    NOT NULL,
	sealed_secret     BLOB    NOT NULL,
	master_key_id     TEXT    NOT NULL,
	state             TEXT    NOT NULL CHECK (state IN ('active', 'retired')),
	created_at        INTEGER NOT NULL, -- unix milliseconds, UTC
	activated_at      INTEGER,          -- NULL: never activated
	last_signed_at    INTEGER,          -- NULL: never recorded
	outstanding_until INTEGER,          -- NULL: never recorded
	PRIMARY KEY (application_sid, sid)
) STRICT, WITHOUT ROWID;

-- At most one active key per application, enforced by the database.
CREATE UNIQUE INDEX keys_one_active_per_application ON keys (application_sid) WHERE state = 'active';

-- ListKeys order.
CREATE INDEX keys_by_created_at ON keys (application_sid, created_at, sid);

-- The store's revision: one row, bumped by every write transaction but
-- RecordKeyUsage.
CREATE TABLE revision (
	id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	value INTEGER NOT NULL
) STRICT;

INSERT INTO revision (id, value) VALUES (1, 0);
