-- The bot: the durable webhook intake queue and one row per evaluation run.
-- Times are UTC: `*_at` as ISO-8601 text, leases as Unix milliseconds (compared in SQL).

-- One row per verified delivery; the unique key drops redeliveries.
CREATE TABLE IF NOT EXISTS deliveries (
    id          BIGSERIAL PRIMARY KEY,
    forge       TEXT NOT NULL,                -- github | gitlab
    delivery_id TEXT NOT NULL,                -- X-GitHub-Delivery / Idempotency-Key / X-Gitlab-Event-UUID
    event       TEXT NOT NULL,                -- X-GitHub-Event / X-Gitlab-Event
    body        BYTEA NOT NULL,               -- the exact bytes that were verified
    received_at TEXT NOT NULL DEFAULT (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
    status      TEXT NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts    BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until BIGINT,                       -- running: lease expiry; queued: not before (retry backoff)
    last_error  TEXT,
    updated_at  TEXT NOT NULL DEFAULT (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
    UNIQUE (forge, delivery_id)
);

CREATE INDEX IF NOT EXISTS deliveries_claimable ON deliveries (status, id);

-- One run per (repository, PR, head SHA); written by the run pipeline.
CREATE TABLE IF NOT EXISTS runs (
    id          BIGSERIAL PRIMARY KEY,
    forge       TEXT NOT NULL,
    repo        TEXT NOT NULL,
    pr          BIGINT NOT NULL,
    head_sha    TEXT NOT NULL,
    base_sha    TEXT,
    status      TEXT NOT NULL DEFAULT 'queued', -- queued | running | done | cancelled | error (owned by the pipeline)
    verdict     TEXT,                         -- pass | skipped | needs_review | fail | error
    report_json TEXT,                         -- the SPEC §5 report
    comment_id  TEXT,                         -- the sticky comment, once posted
    created_at  TEXT NOT NULL DEFAULT (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
    updated_at  TEXT NOT NULL DEFAULT (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
    UNIQUE (forge, repo, pr, head_sha)
);

CREATE INDEX IF NOT EXISTS runs_by_pr ON runs (forge, repo, pr);
