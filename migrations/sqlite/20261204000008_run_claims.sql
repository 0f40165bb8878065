-- Exactly one evaluation of a commit at a time (issue 14 item 6), whichever worker or
-- replica holds the deliveries that ask for it: the evaluator claims the run row
-- (owner = the process's instance id, `{host}~{pid}-{random}`) until `claimed_until`
-- (Unix milliseconds), extending it while it runs. Another process finds the claim
-- live and leaves the run to its owner; a restarted process of the same host, or
-- anyone once the claim has expired, takes it over.
ALTER TABLE runs ADD COLUMN claimed_by TEXT;
ALTER TABLE runs ADD COLUMN claimed_until INTEGER;
