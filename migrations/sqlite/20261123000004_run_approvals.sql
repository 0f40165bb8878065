-- An approval belongs to one run, and a run to one head SHA: a push makes a new run
-- with no approval, which is how "bound to the SHA" is kept.
ALTER TABLE runs ADD COLUMN approved_by TEXT;          -- login, as shown
ALTER TABLE runs ADD COLUMN approved_by_id INTEGER;    -- numeric user id (what was checked)
ALTER TABLE runs ADD COLUMN approved_at TEXT;
ALTER TABLE runs ADD COLUMN tier TEXT;                 -- pr | release, of the stored report
