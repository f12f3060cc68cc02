-- The store revision each replica serves its keys at (see
-- storage.Store.AckRevision): a revoke waits for every live replica to
-- serve the revision of the replacement key before it deletes the revoked
-- one at Twilio. 0 until the replica says (one of an older version never
-- does).
ALTER TABLE replicas ADD COLUMN revision bigint NOT NULL DEFAULT 0;
