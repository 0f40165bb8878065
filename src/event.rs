//! Forge-independent domain events: what a verified GitHub or GitLab delivery means to
//! the bot. `webhook::{github,gitlab}` produce them; the worker hands them to an
//! [`EventHandler`](crate::server::worker::EventHandler).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    Github,
    Gitlab,
}

impl ForgeKind {
    pub const ALL: [ForgeKind; 2] = [ForgeKind::Github, ForgeKind::Gitlab];

    pub fn as_str(self) -> &'static str {
        match self {
            ForgeKind::Github => "github",
            ForgeKind::Gitlab => "gitlab",
        }
    }
}

impl fmt::Display for ForgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ForgeKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "github" => Ok(ForgeKind::Github),
            "gitlab" => Ok(ForgeKind::Gitlab),
            other => Err(anyhow::anyhow!("unknown forge {other:?}")),
        }
    }
}

/// The repository (GitHub) or project (GitLab) an event is about: the base side of a
/// PR/MR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoRef {
    pub forge: ForgeKind,
    /// `owner/name` on GitHub, the full `group/subgroup/project` path on GitLab.
    pub full_name: String,
    /// GitLab project id (the API addresses projects by id); `None` on GitHub.
    #[serde(default)]
    pub project_id: Option<u64>,
    /// GitHub App installation that sent the event (authenticate as it); `None` for
    /// repository webhooks and on GitLab.
    #[serde(default)]
    pub installation_id: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    /// Numeric user id: authorise by this, never by the login.
    pub id: u64,
    /// Login (GitHub) or username (GitLab); empty when the payload does not say.
    pub login: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrAction {
    Opened,
    /// New commits were pushed (GitHub `synchronize`, GitLab `update` with `oldrev`).
    Synchronize,
    Reopened,
    /// A draft became ready (GitHub `ready_for_review`; GitLab a draft flag or `Draft:`
    /// title prefix removed).
    ReadyForReview,
    /// The target branch was changed (GitHub `edited` with `changes.base`, GitLab
    /// `update` with `changes.target_branch`): the same head is re-evaluated against
    /// the new base, and becomes a release PR if that branch is one.
    BaseChanged,
}

impl PrAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PrAction::Opened => "opened",
            PrAction::Synchronize => "synchronize",
            PrAction::Reopened => "reopened",
            PrAction::ReadyForReview => "ready_for_review",
            PrAction::BaseChanged => "base_changed",
        }
    }
}

/// A PR/MR whose head should be evaluated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestEvent {
    pub repo: RepoRef,
    /// PR number (GitHub) or MR iid (GitLab).
    pub number: u64,
    pub action: PrAction,
    pub title: String,
    pub base_ref: String,
    /// Base commit. GitHub always sends it; GitLab hooks do not (ask the API for the
    /// MR's `diff_refs`).
    pub base_sha: Option<String>,
    pub head_ref: String,
    pub head_sha: String,
    /// Repository the head branch lives in; `None` when it was deleted.
    pub head_repo_full_name: Option<String>,
    /// Head repository ≠ base repository (GitLab: source ≠ target project). Fork PRs are
    /// not evaluated automatically.
    pub is_fork: bool,
    pub draft: bool,
    /// The PR's author.
    pub author: UserRef,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommentAction {
    Created,
    Edited,
}

impl CommentAction {
    /// GitHub's word for the action.
    pub fn as_str(self) -> &'static str {
        match self {
            CommentAction::Created => "created",
            CommentAction::Edited => "edited",
        }
    }
}

/// A comment on a PR/MR (where slash commands arrive).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentEvent {
    pub repo: RepoRef,
    /// PR number / MR iid.
    pub number: u64,
    pub comment_id: u64,
    pub action: CommentAction,
    pub author: UserRef,
    pub body: String,
    /// The body before an edit (GitHub sends it; GitLab does not).
    pub previous_body: Option<String>,
    /// The author is a bot account (GitHub `type: Bot`, GitLab project/group token
    /// users).
    pub author_is_bot: bool,
    /// The PR's head commit when the payload carries it (GitLab notes do; GitHub
    /// `issue_comment` does not).
    pub head_sha: Option<String>,
}

/// "Re-run" pressed on a check: the PR is found by head SHA (the payload's
/// `pull_requests` is empty in real deliveries).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RerunEvent {
    pub repo: RepoRef,
    pub head_sha: String,
    pub head_branch: Option<String>,
    /// Name of the check run re-requested (`check_run` only; `check_suite` re-runs all).
    pub check_name: Option<String>,
    /// GitHub App that owns the check run/suite; compare with our own App id.
    pub app_id: Option<u64>,
}

/// Event names of the deliveries the bot queues for itself start with this; the
/// intake refuses them (and delivery ids with it) from a forge.
pub const INTERNAL_PREFIX: &str = "promptgate:";

/// A `/promptgate run` that was accepted: queued as a delivery of its own, so the
/// worker answering comments never waits on an evaluation (a `cancel` behind it is
/// answered at once) and a redelivered comment queues it once.
pub const RUN_COMMAND_EVENT: &str = "promptgate:run";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCommandEvent {
    pub repo: RepoRef,
    /// PR number / MR iid.
    pub number: u64,
    /// Only these suites (all when empty).
    pub suites: Vec<String>,
    /// Every case, not only the affected ones.
    pub full: bool,
    /// Also run the suites' load tests (`/promptgate run load`).
    #[serde(default)]
    pub load: bool,
    /// An approver confirmed the run over budget (`--confirm`).
    #[serde(default)]
    pub confirm: bool,
}

impl RunCommandEvent {
    /// The delivery id prefix shared by every queued run of this PR; `cancel` drops
    /// those that have not started.
    pub fn pr_prefix(repo: &RepoRef, number: u64) -> String {
        format!(
            "{RUN_COMMAND_EVENT}:{}:{}#{number}:",
            repo.forge, repo.full_name
        )
    }
}

/// A push to a repository's default branch: the bot evaluates that commit so the cache
/// holds the default branch's results and a PR later pays only for what it changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushEvent {
    pub repo: RepoRef,
    /// The branch pushed to (the default branch; pushes elsewhere are ignored).
    pub branch: String,
    /// The commit the branch pointed at before; `None` when the branch was created.
    pub before: Option<String>,
    /// The commit the branch points at now.
    pub after: String,
}

/// The all-zero SHA both forges send for "no commit" (a created or deleted ref).
pub const NULL_SHA: &str = "0000000000000000000000000000000000000000";

/// What a push to `git_ref` means, given the repository's default branch: a
/// [`PushEvent`] for a push of commits to the default branch, else why it is ignored.
pub fn push_event(
    repo: RepoRef,
    git_ref: &str,
    before: &str,
    after: &str,
    default_branch: Option<&str>,
) -> Event {
    let Some(branch) = git_ref.strip_prefix("refs/heads/") else {
        return Event::ignored(format!("push to `{git_ref}`, which is not a branch"));
    };
    if after.is_empty() || after == NULL_SHA {
        return Event::ignored(format!("branch `{branch}` was deleted"));
    }
    match default_branch {
        Some(d) if d == branch => Event::Push(PushEvent {
            repo,
            branch: branch.to_string(),
            before: (!before.is_empty() && before != NULL_SHA).then(|| before.to_string()),
            after: after.to_string(),
        }),
        Some(d) => Event::ignored(format!("push to `{branch}`, not the default branch `{d}`")),
        None => Event::ignored(format!(
            "push to `{branch}`: the payload names no default branch"
        )),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    PullRequest(PullRequestEvent),
    Push(PushEvent),
    Comment(CommentEvent),
    Rerun(RerunEvent),
    RunCommand(RunCommandEvent),
    /// The forge checking the hook (GitHub `ping`).
    Ping,
    /// Verified and understood, but not something the bot acts on; the reason is logged.
    Ignored(String),
}

impl Event {
    /// The repository the event is about, if any.
    pub fn repo(&self) -> Option<&RepoRef> {
        match self {
            Event::PullRequest(e) => Some(&e.repo),
            Event::Push(e) => Some(&e.repo),
            Event::Comment(e) => Some(&e.repo),
            Event::Rerun(e) => Some(&e.repo),
            Event::RunCommand(e) => Some(&e.repo),
            Event::Ping | Event::Ignored(_) => None,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::PullRequest(_) => "pull_request",
            Event::Push(_) => "push",
            Event::Comment(_) => "comment",
            Event::Rerun(_) => "rerun",
            Event::RunCommand(_) => "run_command",
            Event::Ping => "ping",
            Event::Ignored(_) => "ignored",
        }
    }

    pub fn ignored(reason: impl Into<String>) -> Self {
        Event::Ignored(reason.into())
    }
}
