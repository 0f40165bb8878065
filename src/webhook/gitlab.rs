//! GitLab deliveries (`X-Gitlab-Event` + verified body) → [`Event`].
//!
//! Handles `Merge Request Hook` (open, reopen, update with new commits, draft → ready)
//! and `Note Hook` on merge requests. Payloads from GitLab 10.x to 18.x parse: fields
//! added since (user ids, `draft`, note `action`) are optional.

use anyhow::Context;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::event::{
    CommentAction, CommentEvent, Event, ForgeKind, PrAction, PullRequestEvent, RepoRef, UserRef,
};

pub const MERGE_REQUEST_HOOK: &str = "Merge Request Hook";
pub const NOTE_HOOK: &str = "Note Hook";
pub const PUSH_HOOK: &str = "Push Hook";

/// Parses one GitLab delivery. `event` is the `X-Gitlab-Event` header.
pub fn parse(event: &str, body: &[u8]) -> anyhow::Result<Event> {
    match event {
        MERGE_REQUEST_HOOK => parse_merge_request(body),
        NOTE_HOOK => parse_note(body),
        PUSH_HOOK => parse_push(body),
        other => {
            let _: IgnoredAny = serde_json::from_slice(body)
                .with_context(|| format!("GitLab {other} payload is not JSON"))?;
            Ok(Event::ignored(format!(
                "GitLab event `{other}` is not handled"
            )))
        }
    }
}

#[derive(Deserialize)]
struct User {
    /// Missing before GitLab ~11.
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    username: Option<String>,
}

#[derive(Deserialize)]
struct Project {
    id: u64,
    path_with_namespace: String,
}

#[derive(Deserialize)]
struct ProjectPath {
    path_with_namespace: String,
}

#[derive(Deserialize)]
struct Commit {
    id: String,
}

fn repo_ref(p: &Project) -> RepoRef {
    RepoRef {
        forge: ForgeKind::Gitlab,
        full_name: p.path_with_namespace.clone(),
        project_id: Some(p.id),
        installation_id: None,
    }
}

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    before: String,
    #[serde(default)]
    after: String,
    project: PushProject,
}

#[derive(Deserialize)]
struct PushProject {
    #[serde(flatten)]
    project: Project,
    #[serde(default)]
    default_branch: Option<String>,
}

fn parse_push(body: &[u8]) -> anyhow::Result<Event> {
    let p: PushPayload =
        serde_json::from_slice(body).context("GitLab Push Hook payload is not a push event")?;
    Ok(crate::event::push_event(
        repo_ref(&p.project.project),
        &p.git_ref,
        &p.before,
        &p.after,
        p.project.default_branch.as_deref(),
    ))
}

#[derive(Deserialize)]
struct MergeRequestPayload {
    #[serde(default)]
    user: Option<User>,
    project: Project,
    object_attributes: MrAttributes,
    #[serde(default)]
    changes: Option<MrChanges>,
}

#[derive(Deserialize)]
struct MrAttributes {
    iid: u64,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    oldrev: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    title: Option<String>,
    source_branch: String,
    target_branch: String,
    #[serde(default)]
    source_project_id: Option<u64>,
    #[serde(default)]
    target_project_id: Option<u64>,
    #[serde(default)]
    source: Option<ProjectPath>,
    author_id: u64,
    #[serde(default)]
    last_commit: Option<Commit>,
    #[serde(default)]
    draft: Option<bool>,
    #[serde(default)]
    work_in_progress: Option<bool>,
}

#[derive(Deserialize)]
struct MrChanges {
    #[serde(default)]
    draft: Option<Change<Option<bool>>>,
    #[serde(default)]
    title: Option<Change<Option<String>>>,
    #[serde(default)]
    target_branch: Option<Change<Option<String>>>,
}

#[derive(Deserialize)]
struct Change<T> {
    previous: T,
    current: T,
}

/// Title prefixes GitLab treats as "draft" (current and historical).
fn is_draft_title(title: &str) -> bool {
    let t = title.trim_start().to_ascii_lowercase();
    ["draft:", "[draft]", "(draft)", "draft ", "wip:", "[wip]"]
        .iter()
        .any(|p| t.starts_with(p))
}

fn parse_merge_request(body: &[u8]) -> anyhow::Result<Event> {
    let p: MergeRequestPayload =
        serde_json::from_slice(body).context("GitLab Merge Request Hook payload")?;
    let a = &p.object_attributes;
    let action_name = a.action.as_deref().unwrap_or("");
    let action = match action_name {
        "open" => PrAction::Opened,
        "reopen" => PrAction::Reopened,
        "update" if a.oldrev.as_deref().is_some_and(|r| !r.is_empty()) => PrAction::Synchronize,
        "update" => {
            let changes = p.changes.as_ref();
            let draft_cleared = changes
                .and_then(|c| c.draft.as_ref())
                .is_some_and(|d| d.previous == Some(true) && d.current == Some(false));
            let draft_prefix_removed = changes.and_then(|c| c.title.as_ref()).is_some_and(|t| {
                t.previous.as_deref().is_some_and(is_draft_title)
                    && !t.current.as_deref().is_some_and(is_draft_title)
            });
            let retargeted = changes
                .and_then(|c| c.target_branch.as_ref())
                .is_some_and(|t| t.previous != t.current);
            if retargeted {
                PrAction::BaseChanged
            } else if draft_cleared || draft_prefix_removed {
                PrAction::ReadyForReview
            } else {
                return Ok(Event::ignored(format!(
                    "GitLab merge request !{} of {}: update without new commits",
                    a.iid, p.project.path_with_namespace
                )));
            }
        }
        other => {
            return Ok(Event::ignored(format!(
                "GitLab merge request action `{other}` does not trigger a run"
            )))
        }
    };
    if let Some(state) = a.state.as_deref() {
        if state != "opened" {
            // e.g. the UI "Test" button replays the latest MR as `open` even when merged.
            return Ok(Event::ignored(format!(
                "GitLab merge request !{} of {} is {state}",
                a.iid, p.project.path_with_namespace
            )));
        }
    }
    let head_sha =
        a.last_commit.as_ref().map(|c| c.id.clone()).context(
            "GitLab Merge Request Hook payload: object_attributes.last_commit is missing",
        )?;
    let is_fork = match (a.source_project_id, a.target_project_id) {
        (Some(s), Some(t)) => s != t,
        _ => false,
    };
    let login = match &p.user {
        // The hook's `user` is whoever triggered the event; it is the author only when
        // the ids agree (or, on old GitLab without ids, when the MR was just opened).
        Some(u) if u.id == Some(a.author_id) || (u.id.is_none() && action == PrAction::Opened) => {
            u.username.clone().unwrap_or_default()
        }
        _ => String::new(),
    };
    Ok(Event::PullRequest(PullRequestEvent {
        repo: repo_ref(&p.project),
        number: a.iid,
        action,
        title: a.title.clone().unwrap_or_default(),
        base_ref: a.target_branch.clone(),
        base_sha: None,
        head_ref: a.source_branch.clone(),
        head_sha,
        head_repo_full_name: a.source.as_ref().map(|s| s.path_with_namespace.clone()),
        is_fork,
        draft: a.draft.or(a.work_in_progress).unwrap_or(false),
        author: UserRef {
            id: a.author_id,
            login,
        },
    }))
}

#[derive(Deserialize)]
struct NotePayload {
    user: User,
    project: Project,
    object_attributes: NoteAttributes,
    #[serde(default)]
    merge_request: Option<NoteMergeRequest>,
}

#[derive(Deserialize)]
struct NoteAttributes {
    id: u64,
    #[serde(default)]
    note: Option<String>,
    noteable_type: String,
    #[serde(default)]
    author_id: Option<u64>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    system: Option<bool>,
}

#[derive(Deserialize)]
struct NoteMergeRequest {
    iid: u64,
    #[serde(default)]
    last_commit: Option<Commit>,
}

/// Users created for project and group access tokens are named
/// `project_<id>_bot_<hash>` / `group_<id>_bot_<hash>`.
fn is_bot_username(name: &str) -> bool {
    let mut parts = name.split('_');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some("project" | "group"), Some(id), Some("bot")) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
    )
}

fn parse_note(body: &[u8]) -> anyhow::Result<Event> {
    let p: NotePayload = serde_json::from_slice(body).context("GitLab Note Hook payload")?;
    let a = &p.object_attributes;
    if a.noteable_type != "MergeRequest" {
        return Ok(Event::ignored(format!(
            "GitLab note on a {}, not on a merge request",
            a.noteable_type
        )));
    }
    if a.system == Some(true) {
        return Ok(Event::ignored("GitLab system note"));
    }
    let action = match a.action.as_deref() {
        None | Some("create") => CommentAction::Created,
        // The Note Hook of an edit carries no previous text, so the bot cannot tell
        // the commands the edit added from those already run (a prose-only edit would
        // run them all again), and its `user` may not be the note's author. Commands
        // on GitLab come from new notes only.
        Some("update") => {
            return Ok(Event::ignored(format!(
                "GitLab note {} was edited: commands are read from new notes only",
                a.id
            )))
        }
        Some(other) => {
            return Ok(Event::ignored(format!(
                "GitLab note action `{other}` is not handled"
            )))
        }
    };
    // Authority comes from the actor of the event (the hook's `user`), which must be
    // the note's author. GitLab before ~11 sends no user id; there only new notes
    // arrive (no `action`), whose actor is their author.
    let Some(actor) = p.user.id.or(a.author_id) else {
        return Ok(Event::ignored(format!(
            "GitLab note {}: the hook names no acting user id",
            a.id
        )));
    };
    if let Some(author) = a.author_id.filter(|author| *author != actor) {
        return Ok(Event::ignored(format!(
            "GitLab note {} was written by user {author} but delivered for user {actor}: its commands are not run",
            a.id
        )));
    }
    let mr = p
        .merge_request
        .as_ref()
        .context("GitLab Note Hook payload on a merge request without `merge_request`")?;
    let username = p.user.username.clone().unwrap_or_default();
    Ok(Event::Comment(CommentEvent {
        repo: repo_ref(&p.project),
        number: mr.iid,
        comment_id: a.id,
        action,
        author: UserRef {
            id: actor,
            login: username.clone(),
        },
        body: a.note.clone().unwrap_or_default(),
        previous_body: None,
        author_is_bot: is_bot_username(&username),
        head_sha: mr.last_commit.as_ref().map(|c| c.id.clone()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_titles_and_bot_names() {
        assert!(is_draft_title("Draft: x"));
        assert!(is_draft_title("[WIP] x"));
        assert!(!is_draft_title("Add drafts"));
        assert!(is_bot_username("project_123_bot_3f2a"));
        assert!(is_bot_username("group_7_bot"));
        assert!(!is_bot_username("project_x_bot"));
        assert!(!is_bot_username("robot"));
    }

    /// The real title-only update (atlantis fixture) is ignored; the same update with
    /// `changes.target_branch` (a retarget) re-evaluates.
    #[test]
    fn a_target_branch_change_is_a_base_change() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/gitlab/webhook.merge_request.update.title.atlantis.json"
        );
        let body = std::fs::read(path).unwrap();
        assert!(matches!(
            parse("Merge Request Hook", &body).unwrap(),
            Event::Ignored(_)
        ));
        let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["changes"]["target_branch"] =
            serde_json::json!({"previous": "main", "current": "release/1.2"});
        let body = serde_json::to_vec(&v).unwrap();
        let Event::PullRequest(e) = parse("Merge Request Hook", &body).unwrap() else {
            panic!("a retarget is a PR event")
        };
        assert_eq!(e.action, PrAction::BaseChanged);
    }

    /// Every published Push Hook to `master`, the default branch in each.
    #[test]
    fn pushes_to_the_default_branch_are_push_events() {
        for name in ["docs-current", "docs-gitlab-10.2-2017", "go-gitlab"] {
            let path = format!(
                "{}/tests/fixtures/gitlab/webhook.push.{name}.json",
                env!("CARGO_MANIFEST_DIR")
            );
            let body = std::fs::read(&path).unwrap();
            let Event::Push(e) = parse(PUSH_HOOK, &body).unwrap() else {
                panic!("{name}: a push to the default branch")
            };
            assert_eq!(e.branch, "master", "{name}");
            assert_eq!(
                e.after, "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
                "{name}"
            );
            assert_eq!(
                e.before.as_deref(),
                Some("95790bf891e76fee5e1747ab589903a6a1f80f22"),
                "{name}"
            );
            assert_eq!(e.repo.project_id, Some(15), "{name}");
            assert_eq!(e.repo.full_name, "mike/diaspora", "{name}");

            // The same push to another branch, and a deleted default branch: ignored.
            let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            v["ref"] = serde_json::json!("refs/heads/feature");
            let other = serde_json::to_vec(&v).unwrap();
            assert!(matches!(
                parse(PUSH_HOOK, &other).unwrap(),
                Event::Ignored(_)
            ));
            v["ref"] = serde_json::json!("refs/heads/master");
            v["after"] = serde_json::json!(crate::event::NULL_SHA);
            let deleted = serde_json::to_vec(&v).unwrap();
            assert!(matches!(
                parse(PUSH_HOOK, &deleted).unwrap(),
                Event::Ignored(_)
            ));
        }
    }

    #[test]
    fn unknown_hooks_are_ignored_but_must_be_json() {
        assert!(matches!(
            parse("Tag Push Hook", b"{}").unwrap(),
            Event::Ignored(_)
        ));
        assert!(parse("Tag Push Hook", b"not json").is_err());
        assert!(parse(NOTE_HOOK, b"{}").is_err());
    }
}
