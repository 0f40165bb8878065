-- The tamper-evident audit log: who ran, commanded, approved or was denied what.
-- Each row's `hash` is hex(sha256(prev_hash || canonical JSON of the row's content)),
-- chaining every entry to the one before it; the first `prev_hash` is 64 zeros.
-- `promptgate audit verify` recomputes the chain.
CREATE TABLE IF NOT EXISTS audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- ids never reuse, so a gap is a deleted entry
    at          TEXT NOT NULL,                      -- RFC 3339, UTC
    kind        TEXT NOT NULL,                      -- run | command | approval | denial | fork_allowance
    actor_id    INTEGER,                            -- the forge's numeric user id
    actor_login TEXT NOT NULL,
    forge       TEXT NOT NULL,                      -- github | gitlab
    repo        TEXT NOT NULL,                      -- owner/name
    pr          INTEGER,
    sha         TEXT,
    verdict     TEXT,
    detail      TEXT NOT NULL,                      -- canonical JSON
    prev_hash   TEXT NOT NULL UNIQUE,               -- UNIQUE: two entries can never share a predecessor
    hash        TEXT NOT NULL UNIQUE
);

CREATE INDEX IF NOT EXISTS audit_log_by_pr ON audit_log (forge, repo, pr);

-- Append-only. Someone with write access to the file can drop these triggers; that is
-- what the hash chain and `promptgate audit verify` are for.
CREATE TRIGGER IF NOT EXISTS audit_log_no_update
BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER IF NOT EXISTS audit_log_no_delete
BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
