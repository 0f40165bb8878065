//! The core's [`Source`] over a forge's API, for one pull request: no clone. The PR's
//! file list is the changed-path set; files are read at a commit through the contents
//! API. Every answer is memoized in the instance, so the core reading the same file (or
//! listing the same tree) twice costs one API call, and concurrent reads of one file
//! share one call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::{Forge, RepoId};
use crate::source::{Rev, Source};

type Slot<T> = Arc<OnceCell<T>>;

/// One memoized answer per key, each computed once.
type Memo<K, T> = Mutex<HashMap<K, Slot<T>>>;

pub struct ForgeSource {
    pub forge: Arc<dyn Forge>,
    pub repo: RepoId,
    /// The pull request whose file list is the diff; `None` reading a single commit
    /// (a default-branch baseline), which has no diff.
    pub number: Option<u64>,
    changed: OnceCell<Vec<String>>,
    /// By (commit, path).
    reads: Memo<(String, String), Option<Vec<u8>>>,
    /// By commit.
    listings: Memo<String, Vec<String>>,
}

impl ForgeSource {
    pub fn new(forge: Arc<dyn Forge>, repo: RepoId, number: u64) -> Self {
        Self::with_pr(forge, repo, Some(number))
    }

    /// A source for one commit, outside any pull request: base and head must be equal.
    pub fn at_commit(forge: Arc<dyn Forge>, repo: RepoId) -> Self {
        Self::with_pr(forge, repo, None)
    }

    fn with_pr(forge: Arc<dyn Forge>, repo: RepoId, number: Option<u64>) -> Self {
        Self {
            forge,
            repo,
            number,
            changed: OnceCell::new(),
            reads: Mutex::new(HashMap::new()),
            listings: Mutex::new(HashMap::new()),
        }
    }

    fn commit<'a>(&self, rev: &'a Rev) -> anyhow::Result<&'a str> {
        match rev {
            Rev::Commit(sha) => Ok(sha),
            Rev::WorkTree => Err(anyhow::anyhow!(
                "{} is read through the {} API, which has no work tree; name a commit",
                self.repo,
                self.forge.kind()
            )),
        }
    }
}

fn slot<K: std::hash::Hash + Eq, T>(map: &Memo<K, T>, key: K) -> Slot<T> {
    let mut map = map
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Arc::clone(map.entry(key).or_default())
}

#[async_trait]
impl Source for ForgeSource {
    /// The pull request's files (both sides of renames); the revisions are not used,
    /// since the PR's file list is base..head. One commit against itself changes nothing.
    async fn changed_paths(&self, base: &Rev, head: &Rev) -> anyhow::Result<Vec<String>> {
        if base == head {
            return Ok(Vec::new());
        }
        let Some(number) = self.number else {
            anyhow::bail!(
                "{} {}..{} names no pull request, so the {} API has no file list for it",
                self.repo,
                base.label(),
                head.label(),
                self.forge.kind()
            );
        };
        let paths = self
            .changed
            .get_or_try_init(|| self.forge.changed_files(&self.repo, number))
            .await?;
        Ok(paths.clone())
    }

    async fn read(&self, rev: &Rev, path: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let sha = self.commit(rev)?;
        let cell = slot(&self.reads, (sha.to_string(), path.to_string()));
        let bytes = cell
            .get_or_try_init(|| self.forge.read_file(&self.repo, sha, path))
            .await?;
        Ok(bytes.clone())
    }

    async fn list_files(&self, rev: &Rev) -> anyhow::Result<Vec<String>> {
        let sha = self.commit(rev)?;
        let cell = slot(&self.listings, sha.to_string());
        let files = cell
            .get_or_try_init(|| self.forge.list_files(&self.repo, sha))
            .await?;
        Ok(files.clone())
    }
}
