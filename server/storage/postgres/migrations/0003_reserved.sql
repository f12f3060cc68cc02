-- Placeholder for migration 0003 (issue 13, Twilio key provisioning), which
-- is written on another branch: migrations are numbered without gaps, and
-- this branch's own migration is 0004. Delete this file when merging.
SELECT 1;
