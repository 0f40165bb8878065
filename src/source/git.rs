//! `Source` over a local git repository, by running the `git` command: it is on every
//! machine that has a checkout, and it reads exactly what the user's git sees.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use async_trait::async_trait;
use tokio::process::Command;

use super::{Rev, Source};

#[derive(Clone, Debug)]
pub struct GitSource {
    root: PathBuf,
}

impl GitSource {
    /// Opens the repository that contains `path` (its top level is found by git).
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let out = git_in(path, &["rev-parse", "--show-toplevel"])
            .await
            .with_context(|| format!("{} is not inside a git repository", path.display()))?;
        Ok(Self {
            root: PathBuf::from(String::from_utf8_lossy(&out).trim()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The git directory (where the result cache lives by default, out of the diff).
    pub async fn git_dir(&self) -> anyhow::Result<PathBuf> {
        let out = self.git(&["rev-parse", "--absolute-git-dir"]).await?;
        Ok(PathBuf::from(String::from_utf8_lossy(&out).trim()))
    }

    /// Resolves a revision name to a full commit id.
    pub async fn resolve(&self, rev: &str) -> anyhow::Result<String> {
        let spec = format!("{rev}^{{commit}}");
        let out = self
            .git(&["rev-parse", "--verify", "--quiet", &spec])
            .await
            .with_context(|| format!("unknown revision `{rev}`"))?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    /// The default base: the merge base of HEAD with the default branch. The default
    /// branch is read, not guessed: `origin/HEAD`, else what the `origin` remote says
    /// its HEAD is; only a repository with no remote at all falls back to a local
    /// `init.defaultBranch`, `main` or `master`. Anything that cannot be resolved is an
    /// error saying how to fix it, never a silent fallback to HEAD (which would compare
    /// a commit with itself and pass).
    pub async fn default_base(&self) -> anyhow::Result<String> {
        let tip = self.default_tip().await?;
        let branch = self.default_branch().await?;
        match self.git(&["merge-base", &tip, "HEAD"]).await {
            Ok(out) => Ok(String::from_utf8_lossy(&out).trim().to_string()),
            Err(_) => bail!(
                "HEAD and the default branch `{branch}` have no common commit in this clone (a \
                 shallow checkout?); deepen it (`git fetch --deepen=100`, or `--unshallow`) or \
                 pass --base"
            ),
        }
    }

    /// The commit at the tip of the default branch (found as [`Self::default_base`]
    /// finds it).
    pub async fn default_tip(&self) -> anyhow::Result<String> {
        let branch = self.default_branch().await?;
        self.resolve(&branch).await.map_err(|_| {
            anyhow::anyhow!(
                "the default branch is `{branch}` but it is not in this clone (a single-branch \
                 checkout?); fetch it (`git fetch origin {short}:refs/remotes/origin/{short} --depth=50`) \
                 or pass --base (or --rev)",
                short = branch.trim_start_matches("origin/")
            )
        })
    }

    /// The default branch as a revision name (`origin/trunk`, or a local `main`).
    async fn default_branch(&self) -> anyhow::Result<String> {
        if let Ok(out) = self
            .git(&[
                "symbolic-ref",
                "--quiet",
                "--short",
                "refs/remotes/origin/HEAD",
            ])
            .await
        {
            return Ok(String::from_utf8_lossy(&out).trim().to_string());
        }
        let remotes = lines(&self.git(&["remote"]).await.unwrap_or_default());
        if remotes.iter().any(|r| r == "origin") {
            // `ref: refs/heads/trunk\tHEAD` from the remote itself.
            let out = self
                .git(&["ls-remote", "--symref", "origin", "HEAD"])
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot tell the default branch: origin/HEAD is not set and asking the \
                         remote failed ({e:#}); run `git remote set-head origin --auto` or pass --base"
                    )
                })?;
            let text = String::from_utf8_lossy(&out);
            if let Some(name) = text
                .lines()
                .find_map(|l| l.strip_prefix("ref: refs/heads/"))
                .and_then(|l| l.split_whitespace().next())
            {
                return Ok(format!("origin/{name}"));
            }
            bail!(
                "cannot tell the default branch: origin/HEAD is not set and the remote did not \
                 name its HEAD; run `git remote set-head origin <branch>` or pass --base"
            );
        }
        if !remotes.is_empty() {
            bail!(
                "cannot tell the default branch: there is no `origin` remote (remotes: {}); pass --base",
                remotes.join(", ")
            );
        }
        let configured = self
            .git(&["config", "--get", "init.defaultBranch"])
            .await
            .ok()
            .map(|o| String::from_utf8_lossy(&o).trim().to_string())
            .filter(|b| !b.is_empty());
        for name in configured
            .iter()
            .map(String::as_str)
            .chain(["main", "master"])
        {
            if self.resolve(name).await.is_ok() {
                return Ok(name.to_string());
            }
        }
        bail!(
            "cannot tell the default branch: no remote, and no `main` or `master` branch; \
             pass --base (for example --base trunk)"
        )
    }

    /// The work tree differs from HEAD (tracked changes or untracked files).
    pub async fn is_dirty(&self) -> anyhow::Result<bool> {
        let out = self
            .git(&["status", "--porcelain", "--untracked-files=normal"])
            .await?;
        Ok(!out.is_empty())
    }

    async fn git(&self, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        git_in(&self.root, args).await
    }
}

async fn git_in(dir: &Path, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await
        .context("running git (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[async_trait]
impl Source for GitSource {
    async fn changed_paths(&self, base: &Rev, head: &Rev) -> anyhow::Result<Vec<String>> {
        let Rev::Commit(base) = base else {
            bail!("the base revision must be a commit");
        };
        let mut paths = match head {
            Rev::Commit(head) => lines(
                &self
                    .git(&["diff", "--name-only", "--no-renames", base, head])
                    .await?,
            ),
            Rev::WorkTree => {
                let mut p = lines(
                    &self
                        .git(&["diff", "--name-only", "--no-renames", base])
                        .await?,
                );
                p.extend(lines(
                    &self
                        .git(&["ls-files", "--others", "--exclude-standard"])
                        .await?,
                ));
                p
            }
        };
        paths.sort();
        paths.dedup();
        Ok(paths)
    }

    async fn read(&self, rev: &Rev, path: &str) -> anyhow::Result<Option<Vec<u8>>> {
        if path.split('/').any(|c| c == "..") || path.starts_with('/') {
            bail!("path `{path}` leaves the repository");
        }
        match rev {
            Rev::WorkTree => {
                let file = self.root.join(path);
                // A committed symlink (`prompts/x.j2 → ~/.aws/credentials`) would send
                // a host file to the model: resolve links and refuse a target outside
                // the repository. Links within it are fine, as git itself stores them.
                let real = match tokio::fs::canonicalize(&file).await {
                    Ok(real) => real,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e).with_context(|| format!("reading {path}")),
                };
                let root = tokio::fs::canonicalize(&self.root)
                    .await
                    .with_context(|| format!("resolving {}", self.root.display()))?;
                if !real.starts_with(&root) {
                    bail!(
                        "{path} is a symbolic link to {}, outside the repository: it is not read",
                        real.display()
                    );
                }
                match tokio::fs::read(&real).await {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e).with_context(|| format!("reading {path}")),
                }
            }
            Rev::Commit(sha) => {
                let spec = format!("{sha}:{path}");
                // `cat-file -e` tells "absent" apart from a failing git.
                let exists = Command::new("git")
                    .arg("-C")
                    .arg(&self.root)
                    .args(["cat-file", "-e", &spec])
                    .output()
                    .await
                    .context("running git")?;
                if !exists.status.success() {
                    return Ok(None);
                }
                Ok(Some(self.git(&["cat-file", "blob", &spec]).await?))
            }
        }
    }

    async fn list_files(&self, rev: &Rev) -> anyhow::Result<Vec<String>> {
        match rev {
            Rev::Commit(sha) => Ok(lines(
                &self.git(&["ls-tree", "-r", "--name-only", sha]).await?,
            )),
            Rev::WorkTree => {
                let mut p = lines(
                    &self
                        .git(&["ls-files", "--cached", "--others", "--exclude-standard"])
                        .await?,
                );
                p.sort();
                p.dedup();
                Ok(p)
            }
        }
    }
}
