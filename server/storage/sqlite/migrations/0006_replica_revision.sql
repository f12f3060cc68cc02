-- The store revision each replica serves its keys at (see
-- storage.Store.AckRevision); kept for the whole contract, as the table.
ALTER TABLE replicas ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
