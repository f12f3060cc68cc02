-- Named bearer API credentials, kept only as the SHA-256 of their token.
CREATE TABLE credentials (
	name       TEXT    NOT NULL PRIMARY KEY,
	hash       BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32), -- SHA-256 of the bearer token
	groups     TEXT    NOT NULL CHECK (json_valid(groups) AND json_type(groups) = 'array'), -- JSON array of strings
	created_at INTEGER NOT NULL -- unix milliseconds, UTC
) STRICT;
