-- Provisioning credentials: what tokend authenticates to Twilio's Keys API
-- with, per application, sealed like key secrets.
CREATE TABLE twilio_credentials (
	application_sid      TEXT    NOT NULL PRIMARY KEY REFERENCES applications (sid) ON DELETE CASCADE,
	username             TEXT    NOT NULL, -- AC... (auth token) or SK... (Main API key)
	sealed_secret        BLOB    NOT NULL,
	master_key_id        TEXT    NOT NULL,
	rotate_every_seconds INTEGER NOT NULL CHECK (rotate_every_seconds >= 0), -- 0: no scheduled rotation
	updated_at           INTEGER NOT NULL -- unix milliseconds, UTC
) STRICT;

-- Intents recorded before calling Twilio, finished or undone at the next
-- start.
CREATE TABLE key_ops (
	id              TEXT    NOT NULL PRIMARY KEY,
	application_sid TEXT    NOT NULL REFERENCES applications (sid) ON DELETE CASCADE,
	op              TEXT    NOT NULL CHECK (op IN ('provision', 'delete', 'revoke')),
	api_key_sid     TEXT    NOT NULL,
	activate        INTEGER NOT NULL CHECK (activate IN (0, 1)),
	created_at      INTEGER NOT NULL -- unix milliseconds, UTC
) STRICT;

-- Leases: one holder at a time does scheduled work (rotation, deletion).
CREATE TABLE leases (
	name       TEXT    NOT NULL PRIMARY KEY,
	holder     TEXT    NOT NULL,
	expires_at INTEGER NOT NULL -- unix milliseconds, UTC
) STRICT;
