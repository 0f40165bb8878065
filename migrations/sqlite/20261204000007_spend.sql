-- Budgets (issue 18): what each finished run paid, so a PR's and a month's spend can be
-- checked against `budget` before the next run starts, and shown in /metrics.
CREATE TABLE IF NOT EXISTS spend (
    forge TEXT NOT NULL,
    repo TEXT NOT NULL,
    pr INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    -- UTC calendar month, YYYY-MM.
    month TEXT NOT NULL DEFAULT (strftime('%Y-%m', 'now')),
    usd REAL NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (forge, repo, run_id)
);
CREATE INDEX IF NOT EXISTS spend_month ON spend (month, forge, repo);
