//! GitHub deliveries (`X-GitHub-Event` + verified body) → [`Event`].
//!
//! Only the fields the bot uses are deserialised; unknown fields are ignored and
//! optional ones may be missing or null, so older and newer payload versions parse.

use anyhow::Context;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::event::{
    CommentAction, CommentEvent, Event, ForgeKind, PrAction, PullRequestEvent, RepoRef, RerunEvent,
    UserRef,
};

/// The comment event (`parse` spells its arms out, which tests/deploy.rs reads).
pub const ISSUE_COMMENT: &str = "issue_comment";

/// Parses one GitHub delivery. `event` is the `X-GitHub-Event` header.
pub fn parse(event: &str, body: &[u8]) -> anyhow::Result<Event> {
    match event {
        "ping" => {
            let _: IgnoredAny =
                serde_json::from_slice(body).context("GitHub ping payload is not JSON")?;
            Ok(Event::Ping)
        }
        "pull_request" => parse_pull_request(body),
        "issue_comment" => parse_issue_comment(body),
        "check_run" => parse_check_run(body),
        "check_suite" => parse_check_suite(body),
        "push" => parse_push(body),
        other => {
            // Still require JSON: a body that is not is a broken delivery.
            let _: IgnoredAny = serde_json::from_slice(body)
                .with_context(|| format!("GitHub {other} payload is not JSON"))?;
            Ok(Event::ignored(format!(
                "GitHub event `{other}` is not handled"
            )))
        }
    }
}

#[derive(Deserialize)]
struct ActionOnly {
    #[serde(default)]
    action: Option<String>,
}

#[derive(Deserialize)]
struct Repo {
    full_name: String,
    #[serde(default)]
    id: Option<u64>,
}

#[derive(Deserialize)]
struct Installation {
    id: u64,
}

#[derive(Deserialize)]
struct User {
    id: u64,
    login: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

impl User {
    fn to_ref(&self) -> UserRef {
        UserRef {
            id: self.id,
            login: self.login.clone(),
        }
    }
}

fn repo_ref(repo: &Repo, installation: Option<&Installation>) -> RepoRef {
    RepoRef {
        forge: ForgeKind::Github,
        full_name: repo.full_name.clone(),
        project_id: None,
        installation_id: installation.map(|i| i.id),
    }
}

fn action_of(event: &str, body: &[u8]) -> anyhow::Result<String> {
    let a: ActionOnly = serde_json::from_slice(body)
        .with_context(|| format!("GitHub {event} payload is not a JSON object"))?;
    Ok(a.action.unwrap_or_default())
}

#[derive(Deserialize)]
struct PullRequestPayload {
    pull_request: PullRequest,
    repository: Repo,
    #[serde(default)]
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct PullRequest {
    number: u64,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    draft: Option<bool>,
    user: User,
    base: Branch,
    head: Branch,
}

#[derive(Deserialize)]
struct Branch {
    #[serde(rename = "ref")]
    git_ref: String,
    sha: String,
    /// Null when the head repository (a fork) was deleted.
    #[serde(default)]
    repo: Option<Repo>,
}

/// An `edited` delivery whose `changes` name the base (a retarget), not a title or body.
fn base_changed(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Edited {
        #[serde(default)]
        changes: Option<EditedChanges>,
    }
    #[derive(Deserialize)]
    struct EditedChanges {
        #[serde(default)]
        base: Option<IgnoredAny>,
    }
    serde_json::from_slice::<Edited>(body)
        .ok()
        .and_then(|e| e.changes)
        .is_some_and(|c| c.base.is_some())
}

fn parse_pull_request(body: &[u8]) -> anyhow::Result<Event> {
    let action = match action_of("pull_request", body)?.as_str() {
        "opened" => PrAction::Opened,
        "synchronize" => PrAction::Synchronize,
        "reopened" => PrAction::Reopened,
        "ready_for_review" => PrAction::ReadyForReview,
        "edited" if base_changed(body) => PrAction::BaseChanged,
        "edited" => {
            return Ok(Event::ignored(
                "GitHub pull_request `edited` without a base change (title or body) does not trigger a run",
            ))
        }
        other => {
            return Ok(Event::ignored(format!(
                "GitHub pull_request action `{other}` does not trigger a run"
            )))
        }
    };
    let p: PullRequestPayload =
        serde_json::from_slice(body).context("GitHub pull_request payload")?;
    let pr = p.pull_request;
    let base_repo = pr.base.repo.as_ref().unwrap_or(&p.repository);
    let is_fork = match &pr.head.repo {
        None => true,
        Some(head) => match (head.id, base_repo.id) {
            (Some(h), Some(b)) => h != b,
            _ => !head.full_name.eq_ignore_ascii_case(&base_repo.full_name),
        },
    };
    Ok(Event::PullRequest(PullRequestEvent {
        repo: repo_ref(&p.repository, p.installation.as_ref()),
        number: pr.number,
        action,
        title: pr.title.unwrap_or_default(),
        base_ref: pr.base.git_ref,
        base_sha: Some(pr.base.sha),
        head_ref: pr.head.git_ref,
        head_sha: pr.head.sha,
        head_repo_full_name: pr.head.repo.map(|r| r.full_name),
        is_fork,
        draft: pr.draft.unwrap_or(false),
        author: pr.user.to_ref(),
    }))
}

#[derive(Deserialize)]
struct IssueCommentPayload {
    issue: Issue,
    comment: Comment,
    /// Who did this: on `edited`, whoever edited the comment, who need not be its
    /// author (anyone with write access may edit another's comment).
    sender: User,
    #[serde(default)]
    changes: Option<Changes>,
    repository: Repo,
    #[serde(default)]
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    /// Present (an object of links) only when the issue is a pull request.
    #[serde(default)]
    pull_request: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Comment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    user: User,
}

#[derive(Deserialize)]
struct Changes {
    #[serde(default)]
    body: Option<ChangedFrom>,
}

#[derive(Deserialize)]
struct ChangedFrom {
    from: Option<String>,
}

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    before: String,
    #[serde(default)]
    after: String,
    repository: PushRepo,
    #[serde(default)]
    installation: Option<Installation>,
}

/// A push names the default branch in `repository` (older payloads: `master_branch`).
#[derive(Deserialize)]
struct PushRepo {
    #[serde(flatten)]
    repo: Repo,
    #[serde(default)]
    default_branch: Option<String>,
    #[serde(default)]
    master_branch: Option<String>,
}

fn parse_push(body: &[u8]) -> anyhow::Result<Event> {
    let p: PushPayload =
        serde_json::from_slice(body).context("GitHub push payload is not a push event")?;
    let default = p
        .repository
        .default_branch
        .as_deref()
        .or(p.repository.master_branch.as_deref());
    Ok(crate::event::push_event(
        repo_ref(&p.repository.repo, p.installation.as_ref()),
        &p.git_ref,
        &p.before,
        &p.after,
        default,
    ))
}

fn parse_issue_comment(body: &[u8]) -> anyhow::Result<Event> {
    let action = match action_of("issue_comment", body)?.as_str() {
        "created" => CommentAction::Created,
        "edited" => CommentAction::Edited,
        other => {
            return Ok(Event::ignored(format!(
                "GitHub issue_comment action `{other}` is not handled"
            )))
        }
    };
    let p: IssueCommentPayload =
        serde_json::from_slice(body).context("GitHub issue_comment payload")?;
    if p.issue.pull_request.is_none() {
        return Ok(Event::ignored(format!(
            "comment on issue #{} of {}, not on a pull request",
            p.issue.number, p.repository.full_name
        )));
    }
    if p.sender.id != p.comment.user.id {
        // Authority comes from whoever acted, and an edit by someone else must not
        // run commands under the author's name (an approver's comment edited by a
        // writer into `/promptgate approve`).
        return Ok(Event::ignored(format!(
            "comment {} by @{} was {} by @{}, not by its author: its commands are not run",
            p.comment.id,
            p.comment.user.login,
            action.as_str(),
            p.sender.login
        )));
    }
    let author_is_bot = p
        .comment
        .user
        .kind
        .as_deref()
        .is_some_and(|k| k.eq_ignore_ascii_case("bot"));
    Ok(Event::Comment(CommentEvent {
        repo: repo_ref(&p.repository, p.installation.as_ref()),
        number: p.issue.number,
        comment_id: p.comment.id,
        action,
        author: p.comment.user.to_ref(),
        body: p.comment.body.unwrap_or_default(),
        previous_body: p.changes.and_then(|c| c.body).and_then(|b| b.from),
        author_is_bot,
        head_sha: None,
    }))
}

#[derive(Deserialize)]
struct App {
    id: u64,
}

#[derive(Deserialize)]
struct CheckRunPayload {
    check_run: CheckRun,
    repository: Repo,
    #[serde(default)]
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct CheckRun {
    #[serde(default)]
    name: Option<String>,
    head_sha: String,
    #[serde(default)]
    check_suite: Option<CheckSuiteRef>,
    #[serde(default)]
    app: Option<App>,
}

#[derive(Deserialize)]
struct CheckSuiteRef {
    #[serde(default)]
    head_branch: Option<String>,
}

fn parse_check_run(body: &[u8]) -> anyhow::Result<Event> {
    let action = action_of("check_run", body)?;
    if action != "rerequested" {
        return Ok(Event::ignored(format!(
            "GitHub check_run action `{action}` is not handled"
        )));
    }
    let p: CheckRunPayload = serde_json::from_slice(body).context("GitHub check_run payload")?;
    Ok(Event::Rerun(RerunEvent {
        repo: repo_ref(&p.repository, p.installation.as_ref()),
        head_sha: p.check_run.head_sha,
        head_branch: p.check_run.check_suite.and_then(|s| s.head_branch),
        check_name: p.check_run.name,
        app_id: p.check_run.app.map(|a| a.id),
    }))
}

#[derive(Deserialize)]
struct CheckSuitePayload {
    check_suite: CheckSuite,
    repository: Repo,
    #[serde(default)]
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct CheckSuite {
    head_sha: String,
    #[serde(default)]
    head_branch: Option<String>,
    #[serde(default)]
    app: Option<App>,
}

fn parse_check_suite(body: &[u8]) -> anyhow::Result<Event> {
    let action = action_of("check_suite", body)?;
    if action != "rerequested" {
        return Ok(Event::ignored(format!(
            "GitHub check_suite action `{action}` is not handled"
        )));
    }
    let p: CheckSuitePayload =
        serde_json::from_slice(body).context("GitHub check_suite payload")?;
    // `check_suite.pull_requests` is empty in real deliveries: the PR is found later by
    // head SHA.
    Ok(Event::Rerun(RerunEvent {
        repo: repo_ref(&p.repository, p.installation.as_ref()),
        head_sha: p.check_suite.head_sha,
        head_branch: p.check_suite.head_branch,
        check_name: None,
        app_id: p.check_suite.app.map(|a| a.id),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No published GitHub `push` delivery is among the shared fixtures; this is the
    /// documented shape (ref, before, after, repository.default_branch), fields trimmed.
    #[test]
    fn a_push_to_the_default_branch_is_a_push_event() {
        let body = |git_ref: &str, after: &str| {
            format!(
                r#"{{"ref":"{git_ref}","before":"aaaa","after":"{after}","created":false,
                "deleted":false,"repository":{{"full_name":"o/r","id":9,"default_branch":"main"}},
                "installation":{{"id":5}}}}"#
            )
        };
        let Event::Push(e) = parse("push", body("refs/heads/main", "bbbb").as_bytes()).unwrap()
        else {
            panic!("a push to main")
        };
        assert_eq!(
            (e.branch.as_str(), e.before.as_deref(), e.after.as_str()),
            ("main", Some("aaaa"), "bbbb")
        );
        assert_eq!(e.repo.installation_id, Some(5));
        for (git_ref, after) in [
            ("refs/heads/feature", "bbbb"),
            ("refs/tags/v1", "bbbb"),
            ("refs/heads/main", crate::event::NULL_SHA),
        ] {
            assert!(
                matches!(
                    parse("push", body(git_ref, after).as_bytes()).unwrap(),
                    Event::Ignored(_)
                ),
                "{git_ref} {after}"
            );
        }
        assert!(parse("push", b"{}").is_err());
    }

    #[test]
    fn minimal_payloads() {
        let body = br#"{"action":"opened","pull_request":{"number":3,"user":{"id":1,"login":"a"},
            "base":{"ref":"main","sha":"b1","repo":{"full_name":"o/r","id":9}},
            "head":{"ref":"f","sha":"h1","repo":{"full_name":"x/r","id":10}}},
            "repository":{"full_name":"o/r","id":9}}"#;
        let Event::PullRequest(e) = parse("pull_request", body).unwrap() else {
            panic!("not a PR event")
        };
        assert!(e.is_fork);
        assert!(!e.draft);
        assert_eq!(e.head_sha, "h1");
        assert_eq!(e.base_sha.as_deref(), Some("b1"));

        assert!(matches!(
            parse("pull_request", br#"{"action":"labeled"}"#).unwrap(),
            Event::Ignored(_)
        ));
        assert!(parse("pull_request", br#"{"action":"opened"}"#).is_err());
        assert!(parse("pull_request", b"payload=%7B%7D").is_err());
        assert!(matches!(
            parse("star", br#"{"action":"created"}"#).unwrap(),
            Event::Ignored(_)
        ));
    }
}
