-- A volunteer's completed trainings (Basislehrgang, Schulungen, Supervision) as a JSON
-- list of {"name", "completed_on"}; existing volunteers start with none.
ALTER TABLE volunteers ADD COLUMN trainings TEXT NOT NULL DEFAULT '[]';
