-- Art. 17 for a volunteer (issue 15): when their profile, contact and device data were
-- erased. The row stays, emptied, so that hours written under their id keep counting in
-- the reports without a name.
ALTER TABLE volunteers ADD COLUMN erased_at BIGINT;
