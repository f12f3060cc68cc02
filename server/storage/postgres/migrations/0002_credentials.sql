-- Named bearer API credentials, kept only as the SHA-256 of their token.
-- Names use the "C" collation, as SIDs do: ListCredentials sorts bytewise.
CREATE TABLE credentials (
	name       text COLLATE "C" NOT NULL PRIMARY KEY,
	hash       bytea            NOT NULL CHECK (length(hash) = 32), -- SHA-256 of the bearer token
	groups     text[]           NOT NULL DEFAULT '{}' CHECK (array_position(groups, NULL) IS NULL),
	created_at timestamptz      NOT NULL,
	CONSTRAINT credentials_hash_key UNIQUE (hash)
);
