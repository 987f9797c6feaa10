-- The age range of each appearance (issue 12): inclusive whole years around `age`, calibrated to hold
-- the true age for about 80 % of faces. NULL with `age` when no face could be judged, and for rows
-- written before this migration (their videos are re-analysed on the next run: the model version changed).

ALTER TABLE events
    ADD COLUMN IF NOT EXISTS age_low  integer CHECK (age_low >= 0),
    ADD COLUMN IF NOT EXISTS age_high integer;

ALTER TABLE events DROP CONSTRAINT IF EXISTS events_age_range_check;
ALTER TABLE events ADD CONSTRAINT events_age_range_check
    CHECK ((age_low IS NULL) = (age_high IS NULL) AND age_low <= age_high);
