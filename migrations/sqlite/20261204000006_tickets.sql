-- Tickets (issue 19): the forge issue filed for each finding, by its identity key, so a
-- re-run or another PR comments on the issue instead of opening another. The issue body
-- carries the same key in a hidden marker, so a lost database does not duplicate them.
CREATE TABLE IF NOT EXISTS tickets (
    forge TEXT NOT NULL,
    repo TEXT NOT NULL,
    key TEXT NOT NULL,
    number INTEGER NOT NULL,
    url TEXT NOT NULL,
    -- The head SHA the issue last heard about: a retried run does not comment twice.
    last_sha TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (forge, repo, key)
);
