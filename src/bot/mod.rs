//! The run pipeline of the bot: an event becomes at most one run per (repository, PR,
//! head SHA). In order: `pending` status on the head SHA, the core's `check` over files
//! read through the forge API, the one sticky comment, the final status with a link to
//! `/runs/{id}`. It does not know which forge it talks to.

mod baseline;
pub mod release;
mod slash;
mod tickets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use async_trait::async_trait;

use crate::audit::{AuditEntry, AuditKind, AuditLog};
use crate::check::{CheckOptions, Revisions};
use crate::event::{Event, ForgeKind, PrAction, RepoRef, RunCommandEvent};
use crate::executor::{Executor, LocalExecutor, RunRequest as ExecRequest};
use crate::forge::source::ForgeSource;
use crate::forge::{CheckRun, Forge, PullRequestInfo, RepoId, StatusState};
use crate::plan::endpoints::EndpointRules;
use crate::report::markdown::{render_comment, RenderOptions, COMMENT_MARKER};
use crate::report::{Report, Tier, Verdict};
use crate::server::links::LinkSigner;
use crate::server::metrics::Metrics;
use crate::server::worker::EventHandler;
use crate::server::AppState;
use crate::source::Rev;
use crate::store::queue::Queue;
use crate::store::runs::{RunStatus, Runs};

/// The status context the bot owns on every evaluated commit.
pub const STATUS_CONTEXT: &str = "promptgate";

type PrKey = (ForgeKind, String, u64);

/// What a run is asked to do beyond "evaluate the head".
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    /// Re-run a commit that already has a finished (or cancelled) run.
    pub force: bool,
    /// Only these suites (all when empty; ignored on release PRs, which run everything).
    pub suites: Vec<String>,
    /// Every case, not only the affected ones.
    pub full: bool,
    /// A maintainer asked: evaluate a fork PR too.
    pub allow_fork: bool,
    /// Also run the suites' load tests (`/promptgate run load`).
    pub load: bool,
    /// An approver confirmed a run over budget (`/promptgate run --confirm`).
    pub confirm: bool,
}

/// The cache is shared by every repository the bot serves: results are served back
/// only within the repository that produced them.
fn cache_namespace(repo: &RepoRef) -> String {
    format!("{}:{}", repo.forge, repo.full_name)
}

fn repo_id(repo: &RepoRef) -> RepoId {
    RepoId {
        full_name: repo.full_name.clone(),
        project_id: repo.project_id,
    }
}

pub struct Bot {
    forges: HashMap<ForgeKind, Arc<dyn Forge>>,
    runs: Runs,
    audit: AuditLog,
    /// Which forge issue holds each finding's ticket.
    tickets: crate::store::tickets::Tickets,
    /// What each run paid, for budgets.
    spend: crate::store::spend::SpendLog,
    /// Where evaluations run: in process (the default) or fanned out to CodeBuild.
    executor: Arc<dyn Executor>,
    metrics: Arc<Metrics>,
    /// Where accepted `/promptgate run` commands are queued, and who to wake for them.
    queue: Queue,
    wake: Arc<tokio::sync::Notify>,
    public_url: String,
    /// The run in progress per PR in this process, so a push can cancel it.
    active: Mutex<HashMap<PrKey, (i64, tokio::task::AbortHandle)>>,
    /// The service's identity: run claims are made in its name.
    identity: crate::server::Identity,
    /// The operator's model endpoint and key allowlists.
    endpoint_rules: EndpointRules,
    /// Signs the run links posted in statuses and comments.
    links: LinkSigner,
}

impl Bot {
    /// The bot of the service `state`: its store, metrics, queue and link signer.
    pub fn new(
        forges: HashMap<ForgeKind, Arc<dyn Forge>>,
        state: &AppState,
        public_url: String,
        max_concurrency: usize,
    ) -> Self {
        let store = &state.store;
        Self {
            runs: Runs::new(store.db()),
            audit: AuditLog::new(store.db()),
            tickets: crate::store::tickets::Tickets::new(store.db()),
            spend: crate::store::spend::SpendLog::new(store.db()),
            executor: Arc::new(LocalExecutor::new(store.clone(), max_concurrency)),
            forges,
            metrics: state.metrics.clone(),
            queue: state.queue.clone(),
            wake: state.wake.clone(),
            public_url: public_url.trim_end_matches('/').to_string(),
            active: Mutex::new(HashMap::new()),
            endpoint_rules: EndpointRules {
                refuse_replay: true,
                ..EndpointRules::default()
            },
            links: state.links.clone(),
            identity: state.identity.clone(),
        }
    }

    /// Sets the operator's endpoint and key allowlists (else the base branch's
    /// manifests decide).
    /// The operator's allowlists; `provider: replay` stays refused whatever they say.
    pub fn with_endpoint_rules(mut self, rules: EndpointRules) -> Self {
        self.endpoint_rules = EndpointRules {
            refuse_replay: true,
            ..rules
        };
        self
    }

    /// Runs evaluations on `executor` instead of in this process.
    pub fn with_executor(mut self, executor: Arc<dyn Executor>) -> Self {
        self.executor = executor;
        self
    }

    /// The run's page, linked from statuses and comments: its random id and a signed,
    /// expiring grant to read it.
    async fn run_url(&self, run_id: i64) -> anyhow::Result<String> {
        let public_id = self.runs.public_id(run_id).await?;
        Ok(self
            .links
            .url(&self.public_url, &public_id, std::time::SystemTime::now()))
    }

    fn forge(&self, repo: &RepoRef) -> anyhow::Result<Arc<dyn Forge>> {
        self.forges.get(&repo.forge).cloned().with_context(|| {
            format!(
                "no {} forge is configured for {}",
                repo.forge, repo.full_name
            )
        })
    }

    /// Evaluates a PR at its current head. `force` re-runs a commit that already has a
    /// finished run (a re-run request); otherwise a finished run is left alone, so a
    /// redelivery or a second event for the same commit does nothing.
    pub async fn evaluate(
        &self,
        repo_ref: &RepoRef,
        number: u64,
        force: bool,
    ) -> anyhow::Result<()> {
        let request = RunRequest {
            force,
            ..RunRequest::default()
        };
        self.evaluate_with(repo_ref, number, &request).await
    }

    /// [`Bot::evaluate`] with what a `/promptgate run` command asks for.
    pub async fn evaluate_with(
        &self,
        repo_ref: &RepoRef,
        number: u64,
        request: &RunRequest,
    ) -> anyhow::Result<()> {
        let forge = self.forge(repo_ref)?;
        let repo = repo_id(repo_ref);
        let pr = forge.pull_request(&repo, number).await?;
        if pr.is_fork && !request.allow_fork {
            let body = fork_comment(&pr)?;
            forge
                .upsert_comment(&repo, number, COMMENT_MARKER, &body)
                .await?;
            tracing::info!(repo = %repo.full_name, pr = number, "fork PR: waiting for a maintainer's /promptgate run");
            return Ok(());
        }
        let kind = repo_ref.forge.as_str();
        let row = self
            .runs
            .open(
                kind,
                &repo.full_name,
                number,
                &pr.head_sha,
                &pr.merge_base_sha,
            )
            .await?;
        if row.status.is_settled() && !request.force {
            tracing::debug!(run = row.id, status = %row.status, "this commit needs no run");
            return Ok(());
        }
        // One evaluation of a commit at a time, across workers and replicas: the run row
        // is claimed, not the delivery (two deliveries can ask for the same commit).
        let me = &self.identity;
        let owner = format!("{}#{:08x}", me.instance, rand::random::<u32>());
        if !self
            .runs
            .claim(
                row.id,
                &owner,
                &me.replica,
                &me.instance,
                request.force,
                RUN_CLAIM_TTL,
            )
            .await?
        {
            tracing::info!(
                run = row.id,
                "this commit is being evaluated by another worker; leaving it to that one"
            );
            return Ok(());
        }
        let outcome = self
            .evaluate_claimed(&forge, repo_ref, &repo, &pr, &row, request, &owner)
            .await;
        if let Err(e) = self.runs.release_claim(row.id, &owner).await {
            tracing::warn!(run = row.id, "cannot release the run's claim: {e:#}");
        }
        outcome
    }

    /// [`Bot::evaluate_with`] once this evaluation holds the run's claim as `owner`.
    #[allow(clippy::too_many_arguments)]
    async fn evaluate_claimed(
        &self,
        forge: &Arc<dyn Forge>,
        repo_ref: &RepoRef,
        repo: &RepoId,
        pr: &PullRequestInfo,
        row: &crate::store::runs::RunRow,
        request: &RunRequest,
        owner: &str,
    ) -> anyhow::Result<()> {
        let (forge, repo, pr, number) = (forge.clone(), repo.clone(), pr.clone(), pr.number);
        let kind = repo_ref.forge.as_str();
        // Policy (release branches) comes from the base revision.
        let policy = release::base_policy(forge.as_ref(), &repo, &pr.base_sha).await?;
        let is_release = release::is_release_branch(policy.as_ref(), &pr.base_ref);
        // A newer commit supersedes whatever still runs for this PR, here or on another
        // replica (which notices through the run row), and the old commits' pending
        // statuses end: nothing else would ever finish them.
        let superseded = self
            .runs
            .supersede(kind, &repo.full_name, number, row.id)
            .await?;
        let short: String = pr.head_sha.chars().take(7).collect();
        let contexts: &[&str] = if is_release {
            &[STATUS_CONTEXT, release::RELEASE_CONTEXT]
        } else {
            &[STATUS_CONTEXT]
        };
        for old_sha in superseded.iter().filter(|sha| **sha != pr.head_sha) {
            for context in contexts {
                if let Err(e) = forge
                    .set_status(
                        &repo,
                        old_sha,
                        context,
                        StatusState::Error,
                        &format!("Superseded by {short}; this commit was not evaluated to the end"),
                        None,
                    )
                    .await
                {
                    tracing::warn!(sha = %old_sha, context, "cannot end the superseded commit's status: {e:#}");
                }
            }
        }
        let key: PrKey = (repo_ref.forge, repo.full_name.clone(), number);
        let mut stopped = Vec::new();
        if let Ok(mut active) = self.active.lock() {
            if let Some((old, handle)) = active.remove(&key) {
                if old != row.id {
                    tracing::info!(
                        run = old,
                        superseded_by = row.id,
                        "cancelling a superseded run"
                    );
                }
                handle.abort();
                stopped.push(old);
            }
        }
        for old in stopped {
            // Dropping the task already stops remote builds; this is the explicit call.
            self.executor.cancel(&old.to_string()).await;
        }
        // A run that stored its report but never got to `done` was interrupted while
        // publishing (a crash, or a forge write that failed): its commit may already
        // show the final status, so it is not set back to pending, and the publish
        // below posts only what the forge does not show yet.
        let interrupted = self
            .runs
            .get(kind, &repo.full_name, number, &pr.head_sha)
            .await?
            .is_some_and(|r| {
                r.report_json.is_some()
                    && matches!(r.status, RunStatus::Running | RunStatus::Error)
                    && !request.force
            });
        self.runs.set_status(row.id, RunStatus::Running).await?;
        let tier = if is_release { Tier::Release } else { Tier::Pr };
        self.runs.set_tier(row.id, tier).await?;
        let run_url = self.run_url(row.id).await?;
        if !interrupted {
            self.announce_pending(&forge, &repo, &pr, is_release, &run_url)
                .await?;
        }
        // The release tier evaluates every case of every suite: a release approval
        // must stand on the whole evaluation, never on a subset.
        let options = CheckOptions {
            suites: if is_release {
                Vec::new()
            } else {
                request.suites.clone()
            },
            full: is_release || request.full,
            tier,
            endpoints: self.endpoint_rules.clone(),
            namespace: Some(cache_namespace(repo_ref)),
            load: request.load,
            estimate_only: false,
            budget: Some(crate::check::BudgetState {
                spent: self
                    .spend
                    .spent(repo_ref.forge, &repo.full_name, number)
                    .await?,
                confirmed: request.confirm,
            }),
        };

        let started = Instant::now();
        let task = {
            let (forge, repo, executor, pr) = (
                Arc::clone(&forge),
                repo.clone(),
                Arc::clone(&self.executor),
                pr.clone(),
            );
            let run_id = row.id;
            // Counted until the evaluation ends, however it ends (an abort drops it).
            let in_flight = self.metrics.run_in_flight();
            tokio::spawn(async move {
                let _in_flight = in_flight;
                run_check(forge, repo, executor, run_id, pr, options).await
            })
        };
        if let Ok(mut active) = self.active.lock() {
            active.insert(key.clone(), (row.id, task.abort_handle()));
        }
        // If this future is dropped (shutdown past its grace), the evaluation stops too;
        // the run stays `running` and the re-leased delivery picks it up again.
        let _abort = AbortOnDrop(task.abort_handle());
        let outcome = self.await_unless_cancelled(task, row.id, owner).await;
        if let Ok(mut active) = self.active.lock() {
            if active.get(&key).is_some_and(|(id, _)| *id == row.id) {
                active.remove(&key);
            }
        }
        let mut report = match outcome {
            Ok(report) => report,
            Err(e) if e.is_cancelled() => {
                // Marked cancelled unless another evaluation of the same commit took the
                // run over (a forced re-run): that one's status is not ours to change.
                if self.runs.holds_claim(row.id, owner).await? {
                    self.runs.set_status(row.id, RunStatus::Cancelled).await?;
                }
                return Ok(());
            }
            Err(e) => anyhow::bail!("run {} crashed: {e}", row.id),
        };
        self.metrics.record_usage(&report.usage);
        let run_url = self.run_url(row.id).await?;
        self.file_tickets(&forge, &repo, &pr, &run_url, &mut report)
            .await;
        self.publish(&forge, &repo, &pr, row.id, &report, is_release, interrupted)
            .await?;
        if let Err(e) = self
            .spend
            .record(
                repo_ref.forge,
                &repo.full_name,
                number,
                row.id,
                report.usage.cost_usd,
            )
            .await
        {
            tracing::error!(run = row.id, error = %format!("{e:#}"), "could not record the run's spend");
        }
        self.audit_run(repo_ref, &pr, &report, request).await;
        self.metrics.record_run(report.verdict, started.elapsed());
        Ok(())
    }

    /// The pending statuses (and check run) a starting evaluation shows on its commit.
    async fn announce_pending(
        &self,
        forge: &Arc<dyn Forge>,
        repo: &RepoId,
        pr: &PullRequestInfo,
        is_release: bool,
        run_url: &str,
    ) -> anyhow::Result<()> {
        forge
            .set_status(
                repo,
                &pr.head_sha,
                STATUS_CONTEXT,
                StatusState::Pending,
                "Evaluating the prompts, models and guardrails this change touches…",
                Some(run_url),
            )
            .await?;
        if is_release {
            forge
                .set_status(
                    repo,
                    &pr.head_sha,
                    release::RELEASE_CONTEXT,
                    StatusState::Pending,
                    "Waiting for the full evaluation of this commit, then /promptgate approve",
                    Some(run_url),
                )
                .await?;
        }
        self.post_check_run(
            forge,
            repo,
            &pr.head_sha,
            StatusState::Pending,
            "Evaluating",
            "Evaluating the prompts, models and guardrails this change touches.",
            run_url,
        )
        .await;
        Ok(())
    }

    /// Stores the report, then the comment, then the final status. A forge write that
    /// finally fails leaves the run `error` and returns the error, so the delivery is
    /// retried (from the cache: no model call is repeated).
    /// With `resumed` (the last publish of this run was interrupted), a status the commit
    /// already shows, same state and description, is not posted again.
    #[allow(clippy::too_many_arguments)]
    async fn publish(
        &self,
        forge: &Arc<dyn Forge>,
        repo: &RepoId,
        pr: &PullRequestInfo,
        run_id: i64,
        report: &Report,
        is_release: bool,
        resumed: bool,
    ) -> anyhow::Result<()> {
        let run_url = &self.run_url(run_id).await?;
        let json = serde_json::to_string(report).context("encoding the report")?;
        let approved_by = self
            .runs
            .get(
                forge.kind().as_str(),
                &repo.full_name,
                pr.number,
                &pr.head_sha,
            )
            .await?
            .and_then(|r| r.approved_by)
            .map(|(login, _)| login);
        let verdict = report.verdict.as_str();
        self.runs
            .finish(run_id, RunStatus::Running, verdict, &json, None)
            .await?;
        let body = render_comment(
            report,
            &RenderOptions {
                report_url: Some(run_url.to_string()),
                ..RenderOptions::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("the comment template does not render: {e}"))?;
        let statuses = statuses(report, approved_by.as_deref(), &pr.head_sha, is_release);
        let written = async {
            let comment = forge
                .upsert_comment(repo, pr.number, COMMENT_MARKER, &body)
                .await?;
            for (context, state, description) in &statuses {
                if resumed && already_shown(forge, repo, &pr.head_sha, context, *state, description).await {
                    tracing::info!(run = run_id, context = %context, "the commit already shows this status; not posting it again");
                    continue;
                }
                forge
                    .set_status(
                        repo,
                        &pr.head_sha,
                        context,
                        *state,
                        description,
                        Some(run_url),
                    )
                    .await?;
            }
            let (_, state, description) = statuses[0].clone();
            Ok::<_, crate::forge::ForgeError>((comment, state, description))
        }
        .await;
        match written {
            Ok((comment, state, description)) => {
                self.post_check_run(
                    forge,
                    repo,
                    &pr.head_sha,
                    state,
                    &description,
                    &body,
                    run_url,
                )
                .await;
                self.runs
                    .finish(run_id, RunStatus::Done, verdict, &json, Some(&comment.id))
                    .await?;
                Ok(())
            }
            Err(e) => {
                tracing::error!(run = run_id, error = %e, "could not write the result to the forge; the run will be retried");
                self.runs.set_status(run_id, RunStatus::Error).await?;
                Err(anyhow::anyhow!("run {run_id}: forge write failed: {e}"))
            }
        }
    }
}

impl Bot {
    /// Stops the PR's evaluation that runs in this process and marks its unfinished
    /// runs cancelled; returns how many runs were cancelled.
    pub async fn cancel(&self, repo: &RepoRef, number: u64) -> anyhow::Result<u64> {
        // Mark the rows first: the aborted task also marks its run, and whichever comes
        // second must not hide that there was something to cancel.
        let marked = self
            .runs
            .cancel_pr(repo.forge.as_str(), &repo.full_name, number)
            .await?;
        let key: PrKey = (repo.forge, repo.full_name.clone(), number);
        // A `/promptgate run` still waiting in the queue is dropped too.
        let queued = self
            .queue
            .discard_queued(
                &RunCommandEvent::pr_prefix(repo, number),
                "cancelled before it started",
            )
            .await?;
        let removed = self.active.lock().ok().and_then(|mut a| a.remove(&key));
        let aborted = match removed {
            Some((run, handle)) => {
                tracing::info!(run, "cancelling on request");
                // Abort first: the run must end as cancelled, not publish the error
                // report an executor returns when told to stop.
                handle.abort();
                self.executor.cancel(&run.to_string()).await;
                1
            }
            None => 0,
        };
        Ok(marked.max(aborted).max(queued))
    }

    /// One audit entry per finished run: the verdict and what was evaluated.
    async fn audit_run(
        &self,
        repo: &RepoRef,
        pr: &PullRequestInfo,
        report: &Report,
        request: &RunRequest,
    ) {
        let suites: serde_json::Map<String, serde_json::Value> = report
            .suites
            .iter()
            .map(|s| (s.name.clone(), serde_json::json!(s.verdict.as_str())))
            .collect();
        let entry = AuditEntry {
            kind: AuditKind::Run,
            actor_id: None,
            actor_login: String::new(),
            forge: repo.forge.as_str().to_string(),
            repo: repo.full_name.clone(),
            pr: Some(pr.number),
            sha: Some(pr.head_sha.clone()),
            verdict: Some(report.verdict.as_str().to_string()),
            detail: serde_json::json!({
                "base_sha": pr.base_sha,
                "tier": report.tier,
                "suites": suites,
                "requested_suites": request.suites,
                "full": request.full,
                "model_calls": report.usage.model_calls,
            }),
        };
        if let Err(e) = self.audit.append(&entry).await {
            tracing::error!(repo = %repo.full_name, pr = pr.number, error = %format!("{e:#}"), "could not write the run to the audit log");
        }
    }

    /// The GitHub App check run beside the status (a no-op for other forges and token
    /// auth). It only repeats what the status and comment say, so a failure to write it
    /// (e.g. an App without `checks: write`) is logged and does not fail the run.
    #[allow(clippy::too_many_arguments)]
    async fn post_check_run(
        &self,
        forge: &Arc<dyn Forge>,
        repo: &RepoId,
        sha: &str,
        state: StatusState,
        title: &str,
        summary: &str,
        run_url: &str,
    ) {
        let check = CheckRun {
            name: STATUS_CONTEXT.to_string(),
            head_sha: sha.to_string(),
            state,
            title: title.to_string(),
            summary: summary.replace(COMMENT_MARKER, "").trim().to_string(),
            details_url: Some(run_url.to_string()),
        };
        if let Err(e) = forge.post_check_run(repo, &check).await {
            tracing::warn!(repo = %repo.full_name, sha, error = %e, "could not write the check run");
        }
    }
}

/// How often a running evaluation looks at its run row for a cancel made elsewhere:
/// `/promptgate cancel` or a superseding push handled by another replica (on Postgres),
/// which can only mark the row.
const CANCEL_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a run claim lasts unless its evaluation extends it (every [`CANCEL_POLL`]):
/// after a crash on another host, the commit waits this long before another replica
/// may evaluate it (its delivery's lease is longer anyway).
const RUN_CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl Bot {
    /// Waits for the evaluation, aborting it (and its executor's builds) when its run
    /// row turns `cancelled`: the row is the source of truth across replicas. A row
    /// that cannot be read does not stop the run; the next poll tries again.
    async fn await_unless_cancelled(
        &self,
        mut task: tokio::task::JoinHandle<Report>,
        run_id: i64,
        owner: &str,
    ) -> Result<Report, tokio::task::JoinError> {
        let mut poll = tokio::time::interval(CANCEL_POLL);
        poll.tick().await;
        loop {
            tokio::select! {
                outcome = &mut task => return outcome,
                _ = poll.tick() => {
                    // Keeps the claim alive and reads the row in one statement.
                    let stop = match self.runs.extend_claim(run_id, owner, RUN_CLAIM_TTL).await {
                        Ok(Some(RunStatus::Cancelled)) => Some("cancelled elsewhere"),
                        Ok(Some(_)) => None,
                        Ok(None) => Some("its claim was taken over"),
                        Err(e) => {
                            tracing::warn!(run = run_id, "reading the run's status: {e:#}");
                            None
                        }
                    };
                    if let Some(why) = stop {
                        tracing::info!(run = run_id, "run {why}; stopping it");
                        task.abort();
                        self.executor.cancel(&run_id.to_string()).await;
                    }
                }
            }
        }
    }
}

/// Whether the commit's newest `context` status is already `state` with `description`
/// (as `set_status` would truncate it). A failed read says no: posting twice is better
/// than not at all.
async fn already_shown(
    forge: &Arc<dyn Forge>,
    repo: &RepoId,
    sha: &str,
    context: &str,
    state: StatusState,
    description: &str,
) -> bool {
    let wanted = crate::forge::truncate_chars(description, crate::forge::STATUS_DESCRIPTION_LIMIT);
    match forge.latest_status(repo, sha, context).await {
        Ok(Some((shown, text))) => shown == state && text == wanted,
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(sha, context, "cannot read the commit's statuses: {e:#}");
            false
        }
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the core on the PR through the forge API (no clone), on the executor.
async fn run_check(
    forge: Arc<dyn Forge>,
    repo: RepoId,
    executor: Arc<dyn Executor>,
    run_id: i64,
    pr: PullRequestInfo,
    options: CheckOptions,
) -> Report {
    let source = ForgeSource::new(forge, repo, pr.number);
    let revs = Revisions {
        base: Rev::Commit(pr.merge_base_sha.clone()),
        head: Rev::Commit(pr.head_sha.clone()),
        policy: Some(Rev::Commit(pr.base_sha.clone())),
        base_label: pr.merge_base_sha.clone(),
        head_label: pr.head_sha.clone(),
    };
    executor
        .run(ExecRequest {
            run_id: run_id.to_string(),
            head_sha: pr.head_sha.clone(),
            source: &source,
            revs: &revs,
            opts: &options,
        })
        .await
}

/// The final statuses of a run: `promptgate` first (a `needs_review` verdict that an
/// approver accepted for this SHA turns to success), then on release PRs
/// `promptgate/release-approval`, which is success only when the full evaluation passed
/// and an approver approved this SHA.
pub fn statuses(
    report: &Report,
    approved_by: Option<&str>,
    sha: &str,
    is_release: bool,
) -> Vec<(&'static str, StatusState, String)> {
    let short = &short_sha(sha);
    // Over budget: nothing ran, so nothing is final, and no earlier approval applies.
    if let Some(over) = report.over_budget.as_ref().filter(|o| o.held) {
        let description = format!(
            "over budget: ${:.4} estimated, ${:.4} allowed (budget.{}); an approver can /promptgate run --confirm",
            over.estimate_usd, over.allowed_usd, over.setting
        );
        let mut out = vec![(STATUS_CONTEXT, StatusState::Pending, description)];
        if is_release {
            out.push((
                release::RELEASE_CONTEXT,
                StatusState::Pending,
                format!("Waiting for the full evaluation at {short}, which is over budget"),
            ));
        }
        return out;
    }
    let (mut state, mut description) = final_status(report);
    if let (Verdict::NeedsReview, Some(login)) = (report.verdict, approved_by) {
        state = StatusState::Success;
        description = format!("needs_review accepted — approved by @{login} at {short}");
    }
    let mut out = vec![(STATUS_CONTEXT, state, description)];
    if is_release {
        let passed = matches!(report.verdict, Verdict::Pass | Verdict::Skipped);
        let release = match (passed, approved_by) {
            (true, Some(login)) => (
                StatusState::Success,
                format!("Approved by @{login} at {short}"),
            ),
            (true, None) => (
                StatusState::Pending,
                format!("Full evaluation passed at {short}; waiting for /promptgate approve from release.approvers"),
            ),
            (false, _) => (
                StatusState::Pending,
                format!(
                    "Full evaluation at {short}: {}; it must pass before an approval counts",
                    report.verdict.as_str()
                ),
            ),
        };
        out.push((release::RELEASE_CONTEXT, release.0, release.1));
    }
    out
}

/// A commit id as people write it: its first 7 characters.
pub fn short_sha(sha: &str) -> String {
    sha.chars().take(7).collect()
}

/// The final commit status: `needs_review` is a failure that says so (SPEC §7).
pub fn final_status(report: &Report) -> (StatusState, String) {
    let evaluated: usize = report.suites.iter().map(|s| s.cases.evaluated).sum();
    // The first suite with this verdict, and the rows that gave it.
    let first_failing = |v: Verdict| {
        report
            .suites
            .iter()
            .find(|s| s.verdict == v)
            .map(|s| {
                let metrics: Vec<String> = s
                    .metrics
                    .iter()
                    .filter(|m| m.verdict() == v)
                    .map(|m| match (v, m.regression, m.failing_on_base) {
                        (Verdict::NeedsReview, true, _) => format!("{} regressed", m.name),
                        (Verdict::NeedsReview, _, true) => {
                            format!("{} fails on base too", m.name)
                        }
                        _ => m.name.to_string(),
                    })
                    .collect();
                if !metrics.is_empty() {
                    format!("{}: {}", s.name, metrics.join(", "))
                } else if v == Verdict::NeedsReview
                    && s.dataset_changes.iter().any(|c| c.change.weakens())
                {
                    format!("{}: cases or assertions removed", s.name)
                } else {
                    s.name.clone()
                }
            })
            .unwrap_or_default()
    };
    match report.verdict {
        Verdict::Pass | Verdict::Skipped if evaluated == 0 => (
            StatusState::Success,
            "No evaluation case is affected by this change".into(),
        ),
        Verdict::Pass | Verdict::Skipped => (
            StatusState::Success,
            format!("All gates passed ({evaluated} cases evaluated)"),
        ),
        Verdict::Fail => (
            StatusState::Failure,
            format!("Failed — {}", first_failing(Verdict::Fail)),
        ),
        Verdict::NeedsReview => (
            StatusState::Failure,
            format!(
                "needs_review — {}; /promptgate approve to accept",
                first_failing(Verdict::NeedsReview)
            ),
        ),
        Verdict::Error => (
            StatusState::Error,
            format!(
                "Error — {}",
                report
                    .errors
                    .first()
                    .cloned()
                    .or_else(|| report
                        .suites
                        .iter()
                        .flat_map(|s| s.errors.first())
                        .next()
                        .cloned())
                    .unwrap_or_else(|| "see the comment".into())
            ),
        ),
    }
}

/// The forges the settings configure: GitHub with a token or as an App, GitLab with a
/// token. A delivery for a forge that is not configured fails with a message naming it
/// and stays in the queue's table for a later retry.
pub fn build_forges(
    settings: &crate::settings::Settings,
) -> anyhow::Result<HashMap<ForgeKind, Arc<dyn Forge>>> {
    use crate::forge::github::{GitHubAuth, GitHubForge};
    let mut forges: HashMap<ForgeKind, Arc<dyn Forge>> = HashMap::new();
    let auth = match (&settings.github_token, settings.github_app_id) {
        (Some(token), _) => Some(GitHubAuth::Token(token.expose().to_string())),
        (None, Some(app_id)) => settings
            .github_private_key_pem()?
            .map(|key| GitHubAuth::App {
                app_id,
                private_key_pem: key.expose().to_string(),
            }),
        (None, None) => None,
    };
    if let Some(auth) = auth {
        let forge = GitHubForge::new(&settings.github_api_url, auth)
            .map_err(|e| anyhow::anyhow!("PROMPTGATE_GITHUB_API_URL: {e}"))?;
        forges.insert(ForgeKind::Github, Arc::new(forge));
    }
    if let Some(token) = &settings.gitlab_token {
        let forge = crate::forge::GitLabForge::new(&settings.gitlab_url, token.expose())
            .map_err(|e| anyhow::anyhow!("PROMPTGATE_GITLAB_URL / PROMPTGATE_GITLAB_TOKEN: {e}"))?;
        forges.insert(ForgeKind::Gitlab, Arc::new(forge));
    }
    Ok(forges)
}

fn fork_comment(pr: &PullRequestInfo) -> anyhow::Result<String> {
    let env = minijinja::Environment::new();
    env.render_str(
        include_str!("../../comment-templates/fork.md.j2"),
        minijinja::context! { marker => COMMENT_MARKER, head_repo => pr.head_repo },
    )
    .context("the fork comment template does not render")
}

#[async_trait]
impl EventHandler for Bot {
    /// An error status on the commit the delivery was about: otherwise its `pending`
    /// stays forever, and a re-run is what the author needs to know about.
    async fn quarantined(&self, delivery_id: &str, event: Event) -> anyhow::Result<()> {
        let (repo_ref, sha) = match &event {
            Event::PullRequest(e) => (&e.repo, &e.head_sha),
            Event::Rerun(e) => (&e.repo, &e.head_sha),
            // A comment's commands name no commit; the log and the metric report it.
            _ => return Ok(()),
        };
        let forge = self.forge(repo_ref)?;
        let description = format!(
            "promptgate stopped {} times evaluating this commit (out of memory?); set aside, see the bot's log",
            crate::store::queue::MAX_CLAIMS_WITHOUT_FINISHING
        );
        tracing::warn!(delivery = delivery_id, sha = %sha, "reporting a quarantined delivery");
        forge
            .set_status(
                &repo_id(repo_ref),
                sha,
                STATUS_CONTEXT,
                StatusState::Error,
                &description,
                None,
            )
            .await?;
        Ok(())
    }

    async fn handle(&self, delivery_id: &str, event: Event) -> anyhow::Result<()> {
        match event {
            Event::PullRequest(e) => {
                if e.draft && e.action != PrAction::ReadyForReview {
                    tracing::debug!(
                        delivery = delivery_id,
                        "draft PR: evaluated when marked ready"
                    );
                    return Ok(());
                }
                // A retarget keeps the head: the run of that commit must be redone
                // against the new base, so it is forced.
                let force = e.action == PrAction::BaseChanged;
                self.evaluate(&e.repo, e.number, force).await
            }
            Event::Rerun(e) => {
                let forge = self.forge(&e.repo)?;
                // Only our own check runs: a repository webhook also hears re-runs of
                // every other App's checks, and a token-authenticated bot owns none.
                if forge.app_id().is_none() || e.app_id != forge.app_id() {
                    tracing::debug!(
                        delivery = delivery_id,
                        app = ?e.app_id,
                        "re-run of a check that is not ours"
                    );
                    return Ok(());
                }
                // The real rerequested payloads carry no PR: find it by head SHA.
                let repo = repo_id(&e.repo);
                for number in forge.pull_requests_for_sha(&repo, &e.head_sha).await? {
                    self.evaluate(&e.repo, number, true).await?;
                }
                Ok(())
            }
            Event::Push(e) => self.baseline(&e).await,
            Event::Comment(e) => self.on_comment(&e).await,
            Event::RunCommand(e) => {
                let request = RunRequest {
                    force: true,
                    suites: e.suites,
                    full: e.full,
                    allow_fork: true,
                    load: e.load,
                    confirm: e.confirm,
                };
                self.evaluate_with(&e.repo, e.number, &request).await
            }
            Event::Ping | Event::Ignored(_) => Ok(()),
        }
    }
}
