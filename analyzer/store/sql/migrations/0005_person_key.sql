-- The person key of each appearance (issue 20): `p1`, `p2`, ... shared by the appearances of one person
-- within one video, linked by face descriptors that are never stored. Not an identity and meaningless
-- outside its video. NULL for rows written before this migration (their videos are re-analysed on the
-- next run: the model version changed).

ALTER TABLE events ADD COLUMN IF NOT EXISTS person_key text;
