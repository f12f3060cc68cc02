-- The application of mint requests that name none, shared by replicas: at
-- most one row. Deleting the application deletes the row.
CREATE TABLE default_application (
	id              integer NOT NULL PRIMARY KEY CHECK (id = 1),
	application_sid text COLLATE "C" NOT NULL REFERENCES applications (sid) ON DELETE CASCADE
);
