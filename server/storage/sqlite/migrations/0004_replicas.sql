-- Live tokend replicas (see storage.Store.Heartbeat). A SQLite store serves
-- one process and tokend does not heartbeat on it; the table is here so
-- that the backend keeps the whole contract.
CREATE TABLE replicas (
	id         TEXT    NOT NULL PRIMARY KEY,
	expires_at INTEGER NOT NULL -- unix milliseconds, UTC
) STRICT;
