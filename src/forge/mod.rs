//! The forges (GitHub, GitLab) behind one trait. The run pipeline talks to a
//! `dyn Forge` and never knows which one it has: it reads the pull request, lists its
//! changed files, reads files at a commit (through [`ForgeSource`], the core's
//! `Source`), sets commit statuses and keeps one sticky comment up to date.
//!
//! Retries live in one place ([`retry`]); a forge implementation only says whether an
//! error is worth retrying. Error messages never carry a credential: every
//! [`ForgeError`] is scrubbed when it is made.

pub mod github;
pub mod gitlab;
pub mod retry;
pub mod source;

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use regex::Regex;

use crate::event::{ForgeKind, UserRef};

pub use github::{GitHubAuth, GitHubForge};
pub use gitlab::GitLabForge;
pub use retry::ForgeRetryPolicy;
pub use source::ForgeSource;

/// A repository on a forge.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoId {
    /// `owner/name` (GitLab: the full `group/subgroup/name` path).
    pub full_name: String,
    /// GitLab's numeric project id, when known.
    pub project_id: Option<u64>,
}

impl RepoId {
    pub fn new(full_name: impl Into<String>) -> Self {
        Self {
            full_name: full_name.into(),
            project_id: None,
        }
    }
}

impl std::fmt::Display for RepoId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.full_name)
    }
}

/// A commit status, in the forge-independent vocabulary of GitHub's statuses API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

impl StatusState {
    /// The state a GitHub wire name names.
    pub fn from_github(name: &str) -> Option<StatusState> {
        [
            StatusState::Pending,
            StatusState::Success,
            StatusState::Failure,
            StatusState::Error,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// The GitHub wire name: `pending`, `success`, `failure`, `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusState::Pending => "pending",
            StatusState::Success => "success",
            StatusState::Failure => "failure",
            StatusState::Error => "error",
        }
    }
}

/// What the pipeline needs to know about a pull (merge) request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequestInfo {
    pub number: u64,
    /// The target branch, e.g. `main`.
    pub base_ref: String,
    /// The target branch's tip as the forge last saw it: where policy is read.
    pub base_sha: String,
    /// The merge base of head and target: what the change is diffed and evaluated
    /// against (GitHub: the compare API's `merge_base_commit`; GitLab:
    /// `diff_refs.base_sha`), so main's own later edits are not the PR's changes.
    pub merge_base_sha: String,
    pub head_sha: String,
    /// `owner/name` of the head repository; empty when it was deleted.
    pub head_repo: String,
    /// The head lives in another repository than the base (or was deleted).
    pub is_fork: bool,
    pub draft: bool,
}

/// A comment the bot wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommentRef {
    pub id: String,
    /// The comment's web address, when the forge returned one.
    pub url: Option<String>,
}

/// An issue on the forge (a GitHub issue, a GitLab project issue): what a ticket of a
/// finding points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssueRef {
    /// GitHub's issue number; GitLab's `iid` (per project).
    pub number: u64,
    /// The issue's web address (GitHub `html_url`, GitLab `web_url`).
    pub url: String,
    /// Open (GitHub `open`, GitLab `opened`) rather than closed.
    pub open: bool,
}

/// A user's access to a repository, in GitHub's vocabulary. GitLab access levels map
/// onto it: 10 guest and 20 reporter → `Read`, 30 developer → `Write`, 40 maintainer →
/// `Maintain`, 50 owner → `Admin`. Ordered, so `>= Permission::Write` is "may run
/// commands".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    None,
    Read,
    Triage,
    Write,
    Maintain,
    Admin,
}

impl Permission {
    /// GitHub's `permission` / `role_name` word (`admin`, `maintain`, `write`, `triage`,
    /// `read`; `none` and anything unknown → `None`).
    pub fn from_github(word: &str) -> Self {
        match word {
            "admin" => Permission::Admin,
            "maintain" => Permission::Maintain,
            "write" | "push" => Permission::Write,
            "triage" => Permission::Triage,
            "read" | "pull" => Permission::Read,
            _ => Permission::None,
        }
    }

    /// A GitLab `access_level` number.
    pub fn from_gitlab_access_level(level: u64) -> Self {
        match level {
            50.. => Permission::Admin,
            40..=49 => Permission::Maintain,
            30..=39 => Permission::Write,
            10..=29 => Permission::Read,
            _ => Permission::None,
        }
    }

    /// Write access or more: what `run` and `cancel` need (SPEC §6).
    pub fn can_write(self) -> bool {
        self >= Permission::Write
    }
}

/// A GitHub check run (posted only when authenticated as a GitHub App; the other
/// forges and token auth ignore it). Its summary is the score table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRun {
    pub name: String,
    pub head_sha: String,
    /// `Pending` → status `in_progress`; the others → `completed` with conclusion
    /// `success` / `failure` / `failure` (error).
    pub state: StatusState,
    pub title: String,
    /// Markdown; cut to the forge's limit by the implementation.
    pub summary: String,
    pub details_url: Option<String>,
}

/// The longest commit-status description GitHub accepts, in characters.
pub const STATUS_DESCRIPTION_LIMIT: usize = 140;

/// The longest comment body GitHub accepts, in characters.
pub const COMMENT_BODY_LIMIT: usize = 65_536;

/// The longest issue title both forges accept, in characters (GitLab: 255).
pub const ISSUE_TITLE_LIMIT: usize = 255;

/// How many of the newest issues a retried `open_issue` looks through for the one its
/// failed attempt may have created.
pub const OPEN_RETRY_SCAN_LIMIT: usize = 100;

#[async_trait]
pub trait Forge: Send + Sync {
    /// Which forge this is; the same value the store and the statuses name it by.
    fn kind(&self) -> ForgeKind;

    async fn pull_request(&self, repo: &RepoId, number: u64)
        -> Result<PullRequestInfo, ForgeError>;

    /// Open pull requests of `repo` whose head commit is `sha`.
    async fn pull_requests_for_sha(&self, repo: &RepoId, sha: &str)
        -> Result<Vec<u64>, ForgeError>;

    /// Every path the pull request touches, both sides of a rename included, each once.
    async fn changed_files(&self, repo: &RepoId, number: u64) -> Result<Vec<String>, ForgeError>;

    /// A file's bytes at commit `sha`; `None` when no file exists at `path` there.
    async fn read_file(
        &self,
        repo: &RepoId,
        sha: &str,
        path: &str,
    ) -> Result<Option<Vec<u8>>, ForgeError>;

    /// Every file (blob) path at commit `sha`.
    async fn list_files(&self, repo: &RepoId, sha: &str) -> Result<Vec<String>, ForgeError>;

    /// Sets the commit status `context` on `sha`. The description is truncated to
    /// [`STATUS_DESCRIPTION_LIMIT`] characters.
    async fn set_status(
        &self,
        repo: &RepoId,
        sha: &str,
        context: &str,
        state: StatusState,
        description: &str,
        target_url: Option<&str>,
    ) -> Result<(), ForgeError>;

    /// The newest status `context` has on `sha`: its state and description, `None`
    /// when it has none. The bot reads it before re-publishing a run whose publish was
    /// interrupted (a crash after the status, before the run was marked done), so the
    /// commit does not get its final status twice. The default knows nothing and says
    /// `None` (the bot then posts): right for GitLab, which refuses a repeated
    /// transition to the same state anyway.
    async fn latest_status(
        &self,
        _repo: &RepoId,
        _sha: &str,
        _context: &str,
    ) -> Result<Option<(StatusState, String)>, ForgeError> {
        Ok(None)
    }

    /// Keeps exactly one comment of ours containing `marker` on the pull request: edits
    /// it in place when it exists, creates it otherwise. The stored body always contains
    /// `marker` (it is prepended when `body` lacks it).
    async fn upsert_comment(
        &self,
        repo: &RepoId,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentRef, ForgeError>;

    /// Posts a new comment.
    async fn post_comment(
        &self,
        repo: &RepoId,
        number: u64,
        body: &str,
    ) -> Result<CommentRef, ForgeError>;

    /// `user`'s access to `repo`. Asked by login, then checked against the numeric id:
    /// a login that now belongs to another account than `user.id` yields `None`.
    /// (GitHub: collaborator permission; GitLab: project member incl. inherited, by id.)
    async fn permission(&self, repo: &RepoId, user: &UserRef) -> Result<Permission, ForgeError>;

    /// Whether `user` is an active member of `group`: `org/team-slug` on GitHub, a
    /// group full path on GitLab (no leading `@`).
    async fn is_group_member(
        &self,
        repo: &RepoId,
        group: &str,
        user: &UserRef,
    ) -> Result<bool, ForgeError>;

    /// The numeric id of the account called `login` now; `None` when there is none.
    /// Approvers are listed by login and matched by id.
    async fn user_id(&self, repo: &RepoId, login: &str) -> Result<Option<u64>, ForgeError>;

    /// Acknowledges an accepted command on its comment: GitHub 👀 reaction, GitLab
    /// `eyes` award emoji on the note. Idempotent.
    async fn acknowledge(
        &self,
        repo: &RepoId,
        number: u64,
        comment_id: u64,
    ) -> Result<(), ForgeError>;

    /// Approves the pull request as the bot, bound to `sha`: GitHub posts a review
    /// `APPROVE` with `commit_id = sha`; GitLab approves with `sha`, which the forge
    /// refuses when the head moved.
    async fn approve(
        &self,
        repo: &RepoId,
        number: u64,
        sha: &str,
        body: &str,
    ) -> Result<(), ForgeError>;

    /// The issue of ours (written by the bot's account, when the forge says who that
    /// is) whose body contains `marker`, open or closed; `None` when there is none.
    /// Scans the repository's issues newest first, reading at most `limit` listed items
    /// (on GitHub the listing includes pull requests, which are skipped but counted, so
    /// the cost stays at most `limit / 100` requests). Non-empty `labels` narrow the
    /// listing to issues carrying all of them; the marker decides.
    async fn find_issue(
        &self,
        repo: &RepoId,
        marker: &str,
        labels: &[String],
        limit: usize,
    ) -> Result<Option<IssueRef>, ForgeError>;

    /// Issue `number`; `None` when there is none (404, GitHub's 410 for a deleted
    /// issue, or a GitHub pull request of that number).
    async fn issue(&self, repo: &RepoId, number: u64) -> Result<Option<IssueRef>, ForgeError>;

    /// Opens an issue with `labels`. The stored body always contains `marker` (it is
    /// prepended when `body` lacks it, and kept when the body must be cut). A retry
    /// after a failed create first looks for an issue with the marker among the newest
    /// ones, so a create that succeeded behind a 502 does not open a second issue.
    async fn open_issue(
        &self,
        repo: &RepoId,
        title: &str,
        body: &str,
        labels: &[String],
        marker: &str,
    ) -> Result<IssueRef, ForgeError>;

    /// Adds a comment (GitLab: a note) to issue `number`.
    async fn comment_on_issue(
        &self,
        repo: &RepoId,
        number: u64,
        body: &str,
    ) -> Result<(), ForgeError>;

    /// Creates or updates the check run `check.name` on `check.head_sha`. Only a GitHub
    /// App can; everything else returns `Ok(())` and relies on the commit status.
    async fn post_check_run(&self, _repo: &RepoId, _check: &CheckRun) -> Result<(), ForgeError> {
        Ok(())
    }

    /// The GitHub App id we authenticate as, to recognise our own check runs in a
    /// re-run request; `None` for token auth and GitLab.
    fn app_id(&self) -> Option<u64> {
        None
    }
}

/// A failed forge call. `Retryable` covers what may succeed later (5xx, 429, GitHub's
/// secondary rate limit, connection errors, timeouts); everything else is `Permanent`.
/// The message never contains a credential: the constructors scrub it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForgeError {
    #[error("{message}")]
    Retryable {
        /// The HTTP status, when the forge answered.
        status: Option<u16>,
        message: String,
        /// How long the forge asked us to wait.
        retry_after: Option<Duration>,
    },
    #[error("{message}")]
    Permanent {
        status: Option<u16>,
        message: String,
    },
}

impl ForgeError {
    pub fn retryable(
        status: Option<u16>,
        message: impl AsRef<str>,
        retry_after: Option<Duration>,
    ) -> Self {
        ForgeError::Retryable {
            status,
            message: scrub(message.as_ref(), &[]),
            retry_after,
        }
    }

    pub fn permanent(status: Option<u16>, message: impl AsRef<str>) -> Self {
        ForgeError::Permanent {
            status,
            message: scrub(message.as_ref(), &[]),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, ForgeError::Retryable { .. })
    }

    /// The HTTP status the forge answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ForgeError::Retryable { status, .. } | ForgeError::Permanent { status, .. } => *status,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub fn message(&self) -> &str {
        match self {
            ForgeError::Retryable { message, .. } | ForgeError::Permanent { message, .. } => {
                message
            }
        }
    }

    /// The same error with `secrets` (and anything shaped like a token) removed from
    /// its message.
    pub fn scrubbed(self, secrets: &[&str]) -> Self {
        match self {
            ForgeError::Retryable {
                status,
                message,
                retry_after,
            } => ForgeError::Retryable {
                status,
                message: scrub(&message, secrets),
                retry_after,
            },
            ForgeError::Permanent { status, message } => ForgeError::Permanent {
                status,
                message: scrub(&message, secrets),
            },
        }
    }

    /// The same error with `context: ` in front of its message.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        match self {
            ForgeError::Retryable {
                status,
                message,
                retry_after,
            } => ForgeError::Retryable {
                status,
                message: format!("{context}: {message}"),
                retry_after,
            },
            ForgeError::Permanent { status, message } => ForgeError::Permanent {
                status,
                message: format!("{context}: {message}"),
            },
        }
    }
}

/// What is put where a credential was.
pub const REDACTED: &str = "[REDACTED]";

static TOKEN_SHAPES: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(concat!(
        // GitHub tokens: personal (classic and fine-grained), OAuth, user-to-server,
        // server-to-server (installation), refresh.
        r"\b(?:gh[pousr]_[A-Za-z0-9_]+|github_pat_[A-Za-z0-9_]+)",
        // GitLab tokens.
        r"|\bglpat-[A-Za-z0-9_\-]+",
        // Authorization header values.
        r"|(?i:\b(?:bearer|token|basic)\s+)[A-Za-z0-9_\-\.=:+/]{20,}",
        // Credentials in URLs: scheme://user:password@host.
        r"|(?i:[a-z][a-z0-9+\-.]*://)[^/\s:@]+:[^/\s@]+@",
        // Signed query parameters.
        r"|(?i:[?&](?:access_token|private_token|token|jwt|sig)=)[^&\s]+",
    ))
    .ok()
});

/// `text` with each of `secrets` and anything shaped like a credential replaced by
/// [`REDACTED`]. Used on every forge error message.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if secret.len() >= 4 && out.contains(secret) {
            out = out.replace(secret, REDACTED);
        }
    }
    match TOKEN_SHAPES.as_ref() {
        Some(re) if re.is_match(&out) => re.replace_all(&out, REDACTED).into_owned(),
        _ => out,
    }
}

/// `text` cut to at most `limit` characters, ending in `…` when it was cut.
pub fn truncate_chars(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    let mut out: String = text.chars().take(limit.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `path` as a repository file path (leading `/` dropped); `None` for the root. A path
/// with empty, `.` or `..` segments is refused rather than sent to the forge.
pub fn repo_file_path(path: &str) -> Result<Option<&str>, ForgeError> {
    let file = path.trim_start_matches('/');
    if file.is_empty() {
        return Ok(None);
    }
    if file
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(ForgeError::permanent(
            None,
            format!("not a repository file path: {path:?}"),
        ));
    }
    Ok(Some(file))
}

/// An issue's marker must say something: an empty one would match every issue.
pub(crate) fn check_marker(marker: &str) -> Result<(), ForgeError> {
    if marker.trim().is_empty() {
        Err(ForgeError::permanent(None, "the issue's marker is empty"))
    } else {
        Ok(())
    }
}

/// Label names trimmed, empty ones dropped.
pub(crate) fn label_list(labels: &[String]) -> Vec<&str> {
    labels
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect()
}

/// `body` cut to `limit` characters, ending in `note` when cut.
pub fn limit_body(body: &str, limit: usize, note: &str) -> String {
    if body.chars().count() <= limit {
        return body.to_string();
    }
    let keep = limit.saturating_sub(note.chars().count());
    let mut out: String = body.chars().take(keep).collect();
    out.push_str(note);
    out
}

/// A sticky comment's body: contains `marker` (prepended when missing, kept when the
/// body must be cut) and fits in `limit` characters.
pub fn sticky_body(marker: &str, body: &str, limit: usize, note: &str) -> String {
    let full = if body.contains(marker) {
        body.to_string()
    } else {
        format!("{marker}\n{body}")
    };
    let limited = limit_body(&full, limit, note);
    if limited.contains(marker) {
        limited
    } else {
        let room = limit.saturating_sub(marker.chars().count() + 1);
        format!("{marker}\n{}", limit_body(&full, room, note))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_known_secrets_and_token_shapes() {
        let s = scrub("bad token abc-known-secret here", &["abc-known-secret"]);
        assert_eq!(s, "bad token [REDACTED] here");
        for leak in [
            "ghp_0123456789abcdefABCDEF0123456789abcd",
            "ghs_SECRET",
            "github_pat_11AAAA_bbbb",
            "glpat-xyzXYZ123",
            "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.payload.sig",
            "token 0123456789abcdef0123",
            "https://x-access-token:s3cr3tvalue@github.com/o/r.git",
            "https://gitlab.example/api?private_token=abcdef",
        ] {
            let out = scrub(&format!("error: {leak} end"), &[]);
            assert!(out.contains(REDACTED), "{out}");
            assert!(!out.contains("SECRET"), "{out}");
            assert!(!out.contains("s3cr3t"), "{out}");
            assert!(!out.contains("abcdef0123"), "{out}");
        }
        assert_eq!(scrub("HTTP 502 Bad Gateway", &[]), "HTTP 502 Bad Gateway");
    }

    #[test]
    fn constructors_scrub() {
        let e = ForgeError::permanent(Some(401), "Bad credentials for ghp_SECRET123");
        assert!(!e.to_string().contains("ghp_SECRET123"));
        let e = e.scrubbed(&["credentials"]).context("GitHub GET /user");
        assert_eq!(
            e.to_string(),
            "GitHub GET /user: Bad [REDACTED] for [REDACTED]"
        );
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abcd", 3), "ab…");
        let long = "é".repeat(200);
        let t = truncate_chars(&long, STATUS_DESCRIPTION_LIMIT);
        assert_eq!(t.chars().count(), STATUS_DESCRIPTION_LIMIT);
    }
}
