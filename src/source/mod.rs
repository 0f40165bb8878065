//! Reading a repository at a revision. The CLI reads a local git repository; the bot
//! implements the same trait over the GitHub/GitLab APIs, so the pipeline never knows
//! where files come from.

pub mod git;

use async_trait::async_trait;

pub use git::GitSource;

/// A revision: a commit, or the uncommitted work tree (the CLI's default head).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Rev {
    Commit(String),
    WorkTree,
}

impl Rev {
    /// The commit id, or `WORKTREE` for the work tree.
    pub fn label(&self) -> &str {
        match self {
            Rev::Commit(sha) => sha,
            Rev::WorkTree => "WORKTREE",
        }
    }
}

#[async_trait]
pub trait Source: Send + Sync {
    /// Paths (repository-relative, `/`-separated) that differ between the revisions,
    /// including both sides of a rename.
    async fn changed_paths(&self, base: &Rev, head: &Rev) -> anyhow::Result<Vec<String>>;
    /// A file's bytes at a revision; `None` when the file does not exist there.
    async fn read(&self, rev: &Rev, path: &str) -> anyhow::Result<Option<Vec<u8>>>;
    /// Every file path at a revision (for `watch` globs).
    async fn list_files(&self, rev: &Rev) -> anyhow::Result<Vec<String>>;
}

/// Reads a file as UTF-8 text, with an error that names the path and revision.
pub async fn read_text(
    source: &dyn Source,
    rev: &Rev,
    path: &str,
) -> anyhow::Result<Option<String>> {
    match source.read(rev, path).await? {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{path} at {} is not valid UTF-8", rev.label())),
    }
}
