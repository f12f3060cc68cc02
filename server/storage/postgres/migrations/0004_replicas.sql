-- Live tokend replicas: each replica upserts its row about every second
-- with an expiry a few seconds ahead (store clock), and divides the rate
-- limits by the number of rows not yet expired. Rows expired for a while
-- are deleted by the heartbeats of the others.
CREATE TABLE replicas (
	id         text COLLATE "C" NOT NULL PRIMARY KEY,
	expires_at timestamptz      NOT NULL
);
