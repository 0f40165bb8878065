-- Run pages are addressed by a random public id, not by the sequential row id
-- (issue 10: /runs/1, /runs/2, ... were readable by anyone who could reach the bot).
ALTER TABLE runs ADD COLUMN public_id TEXT;
UPDATE runs SET public_id = lower(hex(randomblob(16))) WHERE public_id IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS runs_public_id ON runs (public_id);
