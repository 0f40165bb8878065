//! `promptgate import`: translate another tool's config into a promptgate repository
//! layout (issue 17). Each importer writes only files that do not exist yet and lists
//! every construct it could not translate, with its line, so nothing is dropped
//! silently.

pub mod promptfoo;

use std::path::{Component, Path, PathBuf};

/// What an import produced: the files to write (repository-relative path → text) and
/// what it could not translate.
#[derive(Debug, Default)]
pub struct Imported {
    pub files: Vec<(String, String)>,
    pub untranslated: Vec<Untranslated>,
}

/// A construct of the source config that has no promptgate equivalent (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslated {
    pub line: Option<usize>,
    pub what: String,
}

impl std::fmt::Display for Untranslated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// Writes `imported.files` under `root`. Refuses, before writing anything, a path that
/// leaves `root` or a file that exists (unless `force`).
pub fn write(root: &Path, imported: &Imported, force: bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut targets = Vec::new();
    for (rel, _) in &imported.files {
        let inside = Path::new(rel)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if !inside {
            anyhow::bail!(
                "refusing to write `{rel}`: not a path inside {}",
                root.display()
            );
        }
        let path = root.join(rel);
        if path.exists() && !force {
            anyhow::bail!(
                "{} exists; nothing was written (pass --force to overwrite)",
                path.display()
            );
        }
        targets.push(path);
    }
    for (path, (_, text)) in targets.iter().zip(&imported.files) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        }
        std::fs::write(path, text)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    Ok(targets)
}
