-- Provisioning credentials: what tokend authenticates to Twilio's Keys API
-- with, per application, sealed like key secrets.
CREATE TABLE twilio_credentials (
	application_sid      text COLLATE "C" NOT NULL PRIMARY KEY REFERENCES applications (sid) ON DELETE CASCADE,
	username             text             NOT NULL, -- AC... (auth token) or SK... (Main API key)
	sealed_secret        bytea            NOT NULL,
	master_key_id        text             NOT NULL,
	rotate_every_seconds bigint           NOT NULL CHECK (rotate_every_seconds >= 0), -- 0: no scheduled rotation
	updated_at           timestamptz      NOT NULL
);

-- Intents recorded before calling Twilio, finished or undone at the next
-- start.
CREATE TABLE key_ops (
	id              text COLLATE "C" NOT NULL PRIMARY KEY,
	application_sid text COLLATE "C" NOT NULL REFERENCES applications (sid) ON DELETE CASCADE,
	op              text             NOT NULL CHECK (op IN ('provision', 'delete', 'revoke')),
	api_key_sid     text             NOT NULL,
	activate        boolean          NOT NULL,
	created_at      timestamptz      NOT NULL
);

-- Leases: one holder at a time does scheduled work (rotation, deletion);
-- expiry uses the database's clock, so replicas' clocks do not matter.
CREATE TABLE leases (
	name       text COLLATE "C" NOT NULL PRIMARY KEY,
	holder     text             NOT NULL,
	expires_at timestamptz      NOT NULL
);
