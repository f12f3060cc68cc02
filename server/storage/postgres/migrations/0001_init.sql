-- Applications tokend mints tokens for. SIDs use the "C" collation: they
-- compare and sort bytewise, whatever the database's default collation.
CREATE TABLE applications (
	sid             text COLLATE "C" NOT NULL PRIMARY KEY,
	account_sid     text             NOT NULL,
	friendly_name   text             NOT NULL,
	default_grants  bytea            NOT NULL,
	max_ttl_seconds integer          NOT NULL,
	region          text             NOT NULL,
	created_at      timestamptz      NOT NULL,
	updated_at      timestamptz      NOT NULL
);

-- Signing keys; the same API key SID may serve several applications.
CREATE TABLE keys (
	application_sid   text COLLATE "C" NOT NULL REFERENCES applications (sid) ON DELETE CASCADE,
	sid               text COLLATE "C" NOT NULL,
	sealed_secret     bytea            NOT NULL,
	master_key_id     text             NOT NULL,
	state             text             NOT NULL CHECK (state IN ('active', 'retired')),
	created_at        timestamptz      NOT NULL,
	activated_at      timestamptz,     -- NULL: never activated
	last_signed_at    timestamptz,     -- NULL: never recorded
	outstanding_until timestamptz,     -- NULL: never recorded
	PRIMARY KEY (application_sid, sid)
);

-- At most one active key per application, enforced by the database.
CREATE UNIQUE INDEX keys_one_active_per_application ON keys (application_sid) WHERE state = 'active';

-- ListKeys order.
CREATE INDEX keys_by_created_at ON keys (application_sid, created_at, sid);

-- The store's revision: one row, advanced by every write transaction but
-- RecordKeyUsage. A row rather than a sequence: its value is transactional,
-- so a snapshot's revision always names the state the snapshot read.
CREATE TABLE revision (
	id    integer NOT NULL PRIMARY KEY CHECK (id = 1),
	value bigint  NOT NULL
);

INSERT INTO revision (id, value) VALUES (1, 0);
