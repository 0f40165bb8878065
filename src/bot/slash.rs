//! Slash commands on PR comments (SPEC §6): parse (the pure `commands` module), check
//! who may act (deny by default, by numeric user id), acknowledge, then act. Every
//! command, denial, approval and fork-run allowance goes to the audit log.

use anyhow::Context;
use serde_json::json;

use super::release::{self, RELEASE_CONTEXT};
use sha2::{Digest, Sha256};

use super::{repo_id, Bot, STATUS_CONTEXT};
use crate::audit::{AuditEntry, AuditKind};
use crate::commands::{self, Command};
use crate::event::{CommentAction, CommentEvent, RunCommandEvent, RUN_COMMAND_EVENT};
use crate::forge::{Forge, Permission, PullRequestInfo, RepoId, StatusState};
use crate::report::markdown::{untrusted_line, COMMENT_MARKER};
use crate::report::{Tier, Verdict};
use crate::store::queue::Enqueued;
use crate::store::runs::RunStatus;

impl Bot {
    /// Handles a PR comment: runs the commands it holds that the author may run, and
    /// answers with at most one reply, however many commands the comment holds.
    pub(super) async fn on_comment(&self, e: &CommentEvent) -> anyhow::Result<()> {
        if e.author_is_bot || e.body.contains(COMMENT_MARKER) {
            tracing::debug!(comment = e.comment_id, "a bot's comment: ignored");
            return Ok(());
        }
        let parsed = match e.action {
            CommentAction::Created => commands::parse(&e.body),
            CommentAction::Edited => commands::new_commands(e.previous_body.as_deref(), &e.body),
        };
        if parsed.is_empty() {
            return Ok(());
        }
        // The same command twice in one comment is one request.
        let mut unique: Vec<Result<Command, commands::ParseError>> = Vec::new();
        for item in parsed {
            let duplicate = unique.iter().any(|u| match (u, &item) {
                (Ok(a), Ok(b)) => a == b,
                (Err(a), Err(b)) => a.message == b.message,
                _ => false,
            });
            if !duplicate {
                unique.push(item);
            }
        }
        let ignored = unique.len().saturating_sub(MAX_COMMANDS_PER_COMMENT);
        unique.truncate(MAX_COMMANDS_PER_COMMENT);
        let forge = self.forge(&e.repo)?;
        let repo = repo_id(&e.repo);
        let permission = forge.permission(&repo, &e.author).await?;
        if permission == Permission::None {
            // Someone with no access to the repository gets no help text and no
            // answer to a typo: a reply is all such a comment could make the bot do.
            let only_chatter = unique
                .iter()
                .all(|c| matches!(c, Err(_) | Ok(Command::Help)));
            if only_chatter {
                tracing::info!(
                    user = e.author.id,
                    "a comment by a user without repository access: no reply"
                );
                return Ok(());
            }
            unique.retain(|c| !matches!(c, Err(_) | Ok(Command::Help)));
        }
        let mut replies = Replies::default();
        let outcome = async {
            for command in &unique {
                match command {
                    Ok(command) => {
                        self.run_command(
                            forge.as_ref(),
                            &repo,
                            e,
                            permission,
                            command,
                            &mut replies,
                        )
                        .await?
                    }
                    Err(err) => replies.help(Some(&err.to_string()))?,
                }
            }
            anyhow::Ok(())
        }
        .await;
        if ignored > 0 && permission != Permission::None {
            replies.say(&format!(
                "only the first {MAX_COMMANDS_PER_COMMENT} commands of a comment are acted on; {ignored} more were ignored."
            ));
        }
        // What was answered before a failure is still said; the failure then retries
        // the delivery.
        replies.post(forge.as_ref(), &repo, e).await?;
        outcome
    }

    async fn run_command(
        &self,
        forge: &dyn Forge,
        repo: &RepoId,
        e: &CommentEvent,
        permission: Permission,
        command: &Command,
        replies: &mut Replies,
    ) -> anyhow::Result<()> {
        if let Command::Help = command {
            forge.acknowledge(repo, e.number, e.comment_id).await?;
            return replies.help(None);
        }
        if !permission.can_write() {
            let reason = format!(
                "`{}` needs write access to this repository, and @{} does not have it.",
                command.to_text(),
                e.author.login
            );
            return self.deny(e, command, None, &reason, replies).await;
        }
        let pr = forge.pull_request(repo, e.number).await?;
        match command {
            Command::Run {
                suites,
                full,
                load,
                confirm,
            } => {
                let flags = RunFlags {
                    full: *full,
                    load: *load,
                    confirm: *confirm,
                };
                self.command_run(forge, repo, e, &pr, (suites, flags), replies)
                    .await
            }
            Command::Cancel => self.command_cancel(forge, repo, e, &pr, replies).await,
            Command::Approve => self.command_approve(forge, repo, e, &pr, replies).await,
            Command::Help => Ok(()),
        }
    }

    async fn command_run(
        &self,
        forge: &dyn Forge,
        repo: &RepoId,
        e: &CommentEvent,
        pr: &PullRequestInfo,
        (suites, flags): (&[String], RunFlags),
        replies: &mut Replies,
    ) -> anyhow::Result<()> {
        if flags.confirm {
            if let Some(reason) = approver_refusal(forge, repo, pr, &e.author).await? {
                let command = Command::Run {
                    suites: suites.to_vec(),
                    full: flags.full,
                    load: flags.load,
                    confirm: true,
                };
                let reason = format!("`--confirm` runs a run over budget: {reason}");
                return self
                    .deny(e, &command, Some(pr.head_sha.as_str()), &reason, replies)
                    .await;
            }
        }
        if !suites.is_empty() {
            let policy = release::base_policy(forge, repo, &pr.base_sha).await?;
            let known: Vec<String> = policy
                .map(|c| c.suites.keys().cloned().collect())
                .unwrap_or_default();
            if let Some(unknown) = suites.iter().find(|s| !known.contains(s)) {
                let error = format!(
                    "unknown suite \"{unknown}\" (the base branch's .promptgate.yml has: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
                return replies.help(Some(&error));
            }
        }
        forge.acknowledge(repo, e.number, e.comment_id).await?;
        let command = Command::Run {
            suites: suites.to_vec(),
            full: flags.full,
            load: flags.load,
            confirm: flags.confirm,
        };
        self.audit(
            AuditKind::Command,
            e,
            Some(&pr.head_sha),
            None,
            json!({"command": command.to_text()}),
        )
        .await?;
        if pr.is_fork {
            // A maintainer vouches for running a fork's head with the bot's secrets.
            self.audit(
                AuditKind::ForkAllowance,
                e,
                Some(&pr.head_sha),
                None,
                json!({"head_repo": pr.head_repo}),
            )
            .await?;
        }
        self.queue_run(e, &command, suites, flags).await
    }

    /// Queues the evaluation a `run` asked for as a delivery of its own, so this
    /// comment's worker is free for the next command at once. Its id is the comment's
    /// and the command's, so a redelivered (or retried) comment queues it once, and an
    /// edit that adds a new `run` queues a new one.
    async fn queue_run(
        &self,
        e: &CommentEvent,
        command: &Command,
        suites: &[String],
        flags: RunFlags,
    ) -> anyhow::Result<()> {
        let job = RunCommandEvent {
            repo: e.repo.clone(),
            number: e.number,
            suites: suites.to_vec(),
            full: flags.full,
            load: flags.load,
            confirm: flags.confirm,
        };
        let digest = Sha256::new()
            .chain_update(e.body.as_bytes())
            .chain_update([0])
            .chain_update(command.to_text().as_bytes())
            .finalize();
        let id = format!(
            "{}{}:{}",
            RunCommandEvent::pr_prefix(&e.repo, e.number),
            e.comment_id,
            &hex::encode(digest)[..16]
        );
        let body = serde_json::to_vec(&job).context("encoding a queued run")?;
        let queued = self
            .queue
            .enqueue(e.repo.forge.as_str(), &id, RUN_COMMAND_EVENT, &body)
            .await?;
        if let Enqueued::New(_) = queued {
            self.wake.notify_one();
        }
        tracing::info!(pr = e.number, delivery = %id, ?queued, "run queued");
        Ok(())
    }

    async fn command_cancel(
        &self,
        forge: &dyn Forge,
        repo: &RepoId,
        e: &CommentEvent,
        pr: &PullRequestInfo,
        replies: &mut Replies,
    ) -> anyhow::Result<()> {
        forge.acknowledge(repo, e.number, e.comment_id).await?;
        self.audit(
            AuditKind::Command,
            e,
            Some(&pr.head_sha),
            None,
            json!({"command": "/promptgate cancel"}),
        )
        .await?;
        let cancelled = self.cancel(&e.repo, e.number).await?;
        if cancelled == 0 {
            replies.say("no evaluation of this PR is running.");
            return Ok(());
        }
        forge
            .set_status(
                repo,
                &pr.head_sha,
                STATUS_CONTEXT,
                StatusState::Error,
                &format!(
                    "Cancelled by @{}; /promptgate run to evaluate again",
                    e.author.login
                ),
                None,
            )
            .await?;
        Ok(())
    }

    async fn command_approve(
        &self,
        forge: &dyn Forge,
        repo: &RepoId,
        e: &CommentEvent,
        pr: &PullRequestInfo,
        replies: &mut Replies,
    ) -> anyhow::Result<()> {
        let policy = release::base_policy(forge, repo, &pr.base_sha).await?;
        if let Some(reason) = approver_refusal(forge, repo, pr, &e.author).await? {
            let sha = Some(pr.head_sha.as_str());
            return self.deny(e, &Command::Approve, sha, &reason, replies).await;
        }
        forge.acknowledge(repo, e.number, e.comment_id).await?;
        let is_release = release::is_release_branch(policy.as_ref(), &pr.base_ref);
        let kind = e.repo.forge.as_str();
        let run = self
            .runs
            .get(kind, &repo.full_name, e.number, &pr.head_sha)
            .await?;
        let short = &super::short_sha(&pr.head_sha);
        let finished = run.as_ref().filter(|r| r.status == RunStatus::Done);
        let verdict = finished
            .and_then(|r| r.verdict.as_deref())
            .and_then(Verdict::from_word);
        let acceptable = if is_release {
            finished.is_some_and(|r| r.tier == Some(Tier::Release))
                && matches!(verdict, Some(Verdict::Pass | Verdict::Skipped))
        } else {
            verdict == Some(Verdict::NeedsReview)
        };
        let (Some(run), true) = (finished, acceptable) else {
            // An approval before the evaluation passed does not count, and is not kept.
            let reason = if is_release {
                format!(
                    "the full evaluation has not passed at {short} yet (verdict: {}), so this approval does not count. Approve again once it passes.",
                    verdict.map(|v| v.as_str()).unwrap_or("not finished")
                )
            } else {
                format!(
                    "there is nothing to approve at {short}: `/promptgate approve` accepts a `needs_review` verdict, and this commit's is {}.",
                    verdict.map(|v| v.as_str()).unwrap_or("not finished")
                )
            };
            return self
                .deny(e, &Command::Approve, Some(&pr.head_sha), &reason, replies)
                .await;
        };
        let report = run
            .report_json
            .as_deref()
            .and_then(|j| serde_json::from_str::<crate::report::Report>(j).ok());
        // A retried delivery (the forge failed after the approval was recorded) redoes
        // the forge writes below, but records the approval once.
        let already = run.approved_by.as_ref().map(|(_, id)| *id) == Some(e.author.id as i64);
        if !already {
            self.audit(
                AuditKind::Approval,
                e,
                Some(&pr.head_sha),
                verdict.map(|v| v.as_str()),
                json!({"tier": if is_release { "release" } else { "pr" }, "run": run.id}),
            )
            .await?;
            self.runs
                .approve(run.id, &e.author.login, e.author.id)
                .await?;
        }
        let Some(report) = report else {
            anyhow::bail!("run {}: the stored report does not parse", run.id);
        };
        let run_url = self.run_url(run.id).await?;
        if is_release {
            let body = format!(
                "Release approved by @{} after a passing full evaluation of {short}.",
                e.author.login
            );
            match forge.approve(repo, e.number, &pr.head_sha, &body).await {
                Ok(()) => {}
                // A forge that refuses the review for good (GitHub: a bot may not
                // approve a PR it opened; GitLab: the head moved) must not block the
                // status: say so, and go on.
                Err(err) if !err.is_retryable() => {
                    tracing::warn!(pr = e.number, error = %err, "the forge refused the approval review");
                    replies.say(&format!(
                        "the approval is recorded, but the forge refused the bot's review: {}",
                        untrusted_line(&err.to_string())
                    ));
                }
                Err(err) => return Err(err.into()),
            }
            if let Some(config) = &policy {
                let notes =
                    release::release_notes(forge, repo, &pr.head_sha, config, &report, &e.author)
                        .await?;
                forge.post_comment(repo, e.number, &notes).await?;
            }
        }
        for (context, state, description) in
            super::statuses(&report, Some(&e.author.login), &pr.head_sha, is_release)
        {
            if context == RELEASE_CONTEXT || report.verdict == Verdict::NeedsReview {
                forge
                    .set_status(
                        repo,
                        &pr.head_sha,
                        context,
                        state,
                        &description,
                        Some(&run_url),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Says no, briefly and why, and records it.
    async fn deny(
        &self,
        e: &CommentEvent,
        command: &Command,
        sha: Option<&str>,
        reason: &str,
        replies: &mut Replies,
    ) -> anyhow::Result<()> {
        tracing::info!(
            user = e.author.id,
            command = command.name(),
            "command denied"
        );
        self.audit(
            AuditKind::Denial,
            e,
            sha,
            None,
            json!({"command": command.to_text(), "reason": reason}),
        )
        .await?;
        replies.say(&format!("not done — {reason}"));
        Ok(())
    }

    async fn audit(
        &self,
        kind: AuditKind,
        e: &CommentEvent,
        sha: Option<&str>,
        verdict: Option<&str>,
        detail: serde_json::Value,
    ) -> anyhow::Result<()> {
        let entry = AuditEntry {
            kind,
            actor_id: Some(e.author.id),
            actor_login: e.author.login.clone(),
            forge: e.repo.forge.as_str().to_string(),
            repo: e.repo.full_name.clone(),
            pr: Some(e.number),
            sha: sha.map(String::from),
            verdict: verdict.map(String::from),
            detail,
        };
        self.audit
            .append(&entry)
            .await
            .context("writing the audit log")?;
        Ok(())
    }
}

/// The most commands of one comment the bot acts on (bors caps its batches too): a
/// comment of a thousand command lines must not become a thousand forge calls.
pub const MAX_COMMANDS_PER_COMMENT: usize = 10;

/// What the bot answers to one comment, posted as a single reply at the end.
#[derive(Default)]
struct Replies {
    /// Short answers to the author (`@login:` is added once, in front).
    said: Vec<String>,
    /// Rendered help texts (each names the error it answers).
    help: Vec<String>,
}

impl Replies {
    fn say(&mut self, text: &str) {
        self.said.push(text.to_string());
    }

    fn help(&mut self, error: Option<&str>) -> anyhow::Result<()> {
        let text = commands::help_text(error).context("the help template does not render")?;
        self.help.push(text);
        Ok(())
    }

    async fn post(self, forge: &dyn Forge, repo: &RepoId, e: &CommentEvent) -> anyhow::Result<()> {
        let mut parts: Vec<String> = Vec::new();
        match self.said.as_slice() {
            [] => {}
            [one] => parts.push(format!("@{}: {one}", e.author.login)),
            many => parts.push(format!(
                "@{}:\n{}",
                e.author.login,
                many.iter()
                    .map(|t| format!("- {t}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )),
        }
        parts.extend(self.help);
        if parts.is_empty() {
            return Ok(());
        }
        forge
            .post_comment(repo, e.number, &parts.join("\n\n"))
            .await?;
        Ok(())
    }
}

/// The flags of an accepted `run`.
#[derive(Clone, Copy, Debug, Default)]
struct RunFlags {
    full: bool,
    load: bool,
    confirm: bool,
}

/// Why `author` may not act as an approver of `pr`, if they may not. Approvers come
/// from the base branch's config: a PR cannot name its own.
async fn approver_refusal(
    forge: &dyn Forge,
    repo: &RepoId,
    pr: &PullRequestInfo,
    author: &crate::event::UserRef,
) -> anyhow::Result<Option<String>> {
    let policy = release::base_policy(forge, repo, &pr.base_sha).await?;
    let approvers = policy
        .as_ref()
        .and_then(|c| c.release.as_ref())
        .map(|r| r.approvers.clone())
        .unwrap_or_default();
    Ok(if approvers.is_empty() {
        Some("no `release.approvers` are listed in the base branch's .promptgate.yml, so nobody can approve.".to_string())
    } else if !release::is_approver(forge, repo, &approvers, author).await? {
        Some(format!(
            "@{} is not one of the `release.approvers` in the base branch's .promptgate.yml.",
            author.login
        ))
    } else {
        None
    })
}
