//! Release-branch policy, read from the base revision (a PR cannot name its own
//! approvers), and the release notes posted on approval.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Serialize;
use sha1::Digest as _;

use crate::config::guardrail::GuardrailConfig;
use crate::config::manifest::ModelManifest;
use crate::config::repo::RepoConfig;
use crate::event::{ForgeKind, UserRef};
use crate::forge::{Forge, ForgeError, RepoId};
use crate::report::Report;

/// The repository config file, at the root.
pub const CONFIG_FILE: &str = ".promptgate.yml";

/// The second status of release PRs.
pub const RELEASE_CONTEXT: &str = "promptgate/release-approval";

/// The policy config at `base_sha`: `None` when there is none or it does not parse (the
/// run itself reports why, naming the line).
pub async fn base_policy(
    forge: &dyn Forge,
    repo: &RepoId,
    base_sha: &str,
) -> Result<Option<RepoConfig>, ForgeError> {
    let Some(bytes) = forge.read_file(repo, base_sha, CONFIG_FILE).await? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    Ok(RepoConfig::parse(&text).ok())
}

/// Whether `base_ref` is one of `release.branches` (globs).
pub fn is_release_branch(config: Option<&RepoConfig>, base_ref: &str) -> bool {
    let Some(release) = config.and_then(|c| c.release.as_ref()) else {
        return false;
    };
    release.branches.iter().any(|glob| {
        globset::Glob::new(glob)
            .map(|g| g.compile_matcher().is_match(base_ref))
            .unwrap_or(false)
    })
}

/// Whether `user` is one of `approvers`: a login (matched by the account's numeric id,
/// so a renamed-and-reused login does not count), or `@org/team` / `@group`.
pub async fn is_approver(
    forge: &dyn Forge,
    repo: &RepoId,
    approvers: &[String],
    user: &UserRef,
) -> Result<bool, ForgeError> {
    for entry in approvers {
        let entry = entry.trim();
        if let Some(group) = entry.strip_prefix('@') {
            // GitHub teams are `org/team`; a bare `@name` on GitHub is a user.
            if forge.kind() == ForgeKind::Github && !group.contains('/') {
                if forge.user_id(repo, group).await? == Some(user.id) {
                    return Ok(true);
                }
            } else if forge.is_group_member(repo, group, user).await? {
                return Ok(true);
            }
        } else if !entry.is_empty() && forge.user_id(repo, entry).await? == Some(user.id) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[derive(Serialize)]
struct FileVersion {
    path: String,
    /// Git's blob id of the content (what `git ls-tree` shows).
    blob: String,
}

#[derive(Serialize)]
struct SuiteVersions {
    name: String,
    prompts: Vec<FileVersion>,
    model: Option<serde_json::Value>,
    model_file: String,
    dataset: String,
    /// sha256 of the dataset's bytes.
    dataset_sha256: Option<String>,
    guardrail: Option<String>,
    thresholds: BTreeMap<String, String>,
    scores: Vec<(String, String)>,
}

/// The release notes of an approved release PR: what exactly was approved — prompt
/// blob ids, model ids and parameters, dataset content hashes, guardrail versions, the
/// thresholds, and the final scores — at `sha`.
pub async fn release_notes(
    forge: &dyn Forge,
    repo: &RepoId,
    sha: &str,
    config: &RepoConfig,
    report: &Report,
    approver: &UserRef,
) -> anyhow::Result<String> {
    let mut suites = Vec::new();
    for (name, suite) in &config.suites {
        let mut prompts = Vec::new();
        for (_, path) in suite.prompts.roles() {
            if let Some(bytes) = forge.read_file(repo, sha, path).await? {
                prompts.push(FileVersion {
                    path: path.to_string(),
                    blob: git_blob_id(&bytes),
                });
            }
        }
        let model = match forge.read_file(repo, sha, &suite.model).await? {
            Some(bytes) => ModelManifest::parse(&suite.model, &String::from_utf8_lossy(&bytes))
                .ok()
                .map(|m| {
                    serde_json::json!({
                        "provider": m.provider,
                        "model": m.model,
                        "region": m.region,
                        "parameters": m.parameters,
                    })
                }),
            None => None,
        };
        let dataset_sha256 = forge
            .read_file(repo, sha, &suite.dataset)
            .await?
            .map(|bytes| hex::encode(sha2::Sha256::digest(&bytes)));
        let guardrail = match &suite.guardrail {
            Some(path) => forge.read_file(repo, sha, path).await?.map(|bytes| {
                match GuardrailConfig::parse(path, &String::from_utf8_lossy(&bytes)) {
                    Ok(g) => format!("{} version {}", g.guardrail_id, g.guardrail_version),
                    Err(_) => format!("{path} (does not parse)"),
                }
            }),
            None => None,
        };
        let thresholds = suite
            .metrics
            .iter()
            .map(|(metric, t)| {
                let bound = match (t.min, t.max) {
                    (Some(min), Some(max)) => format!("{min} ≤ x ≤ {max}"),
                    (Some(min), None) => format!("≥ {min}"),
                    (None, Some(max)) => format!("≤ {max}"),
                    (None, None) => "—".to_string(),
                };
                (metric.as_str().to_string(), bound)
            })
            .collect();
        let scores = report
            .suites
            .iter()
            .find(|s| &s.name == name)
            .map(|s| {
                s.metrics
                    .iter()
                    .map(|m| {
                        let head = m.head.map(|v| format!("{v:.4}")).unwrap_or("—".into());
                        (m.name.as_str().to_string(), head)
                    })
                    .collect()
            })
            .unwrap_or_default();
        suites.push(SuiteVersions {
            name: name.clone(),
            prompts,
            model,
            model_file: suite.model.clone(),
            dataset: suite.dataset.clone(),
            dataset_sha256,
            guardrail,
            thresholds,
            scores,
        });
    }
    let env = minijinja::Environment::new();
    env.render_str(
        include_str!("../../comment-templates/release-notes.md.j2"),
        minijinja::context! {
            sha => sha,
            approver => approver.login,
            verdict => report.verdict.as_str(),
            suites => suites,
        },
    )
    .context("the release notes template does not render")
}

/// Git's object id of a blob: sha1 over `blob <len>\0<bytes>` (git's own identifier,
/// so a reader can match it with `git ls-tree`; not a content key of ours).
pub fn git_blob_id(bytes: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids_match_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            git_blob_id(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        assert_eq!(git_blob_id(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    }

    #[test]
    fn release_branches_are_globs_from_the_config() {
        let cfg = RepoConfig::parse(
            "version: 1\nsuites:\n  s:\n    prompts: { user: p.j2 }\n    model: m.yaml\n    dataset: d.jsonl\n    metrics: { assertions: { min: 1.0 } }\nrelease:\n  branches: [\"release/*\"]\n  approvers: [alice]\n",
        )
        .unwrap();
        assert!(is_release_branch(Some(&cfg), "release/1.2"));
        assert!(!is_release_branch(Some(&cfg), "main"));
        assert!(!is_release_branch(None, "release/1.2"));
    }
}
