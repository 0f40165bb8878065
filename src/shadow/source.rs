//! Reading invocation-log objects from S3 (every object under a prefix) or from a
//! local directory (the same files, recursively), gzip or not.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};

/// Where the logs are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogSource {
    S3 { bucket: String, prefix: String },
    Dir(PathBuf),
}

/// A key Bedrock writes large bodies under; those objects are fetched through the
/// record that points at them, never read as records.
const DATA_SEGMENT: &str = "/data/";

impl LogSource {
    /// `s3://bucket/prefix/`, or a path (absolute, `./…`, `file://…`).
    pub fn parse(text: &str) -> Result<LogSource, String> {
        let t = text.trim();
        if let Some(rest) = t.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("`{text}` names no bucket (s3://bucket/prefix/)"));
            }
            return Ok(LogSource::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if t.contains("://") && !t.starts_with("file://") {
            return Err(format!(
                "`{text}` is neither s3://bucket/prefix/ nor a local directory"
            ));
        }
        if t.is_empty() {
            return Err("is empty".to_string());
        }
        Ok(LogSource::Dir(PathBuf::from(
            t.trim_start_matches("file://"),
        )))
    }

    pub fn label(&self) -> String {
        match self {
            LogSource::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
            LogSource::Dir(p) => p.display().to_string(),
        }
    }
}

/// One object (or file) of log records, decompressed.
pub struct LogObject {
    pub name: String,
    pub text: String,
}

/// Reads logs and the large bodies their records point to.
pub struct LogReader {
    source: LogSource,
    s3: Option<aws_sdk_s3::Client>,
}

impl LogReader {
    /// An S3 source gets a client from the standard credential chain and the
    /// `AWS_ENDPOINT_URL_S3` override, as the CodeBuild executor builds it.
    pub async fn new(source: LogSource) -> LogReader {
        let s3 = match &source {
            LogSource::S3 { .. } => {
                let cfg = crate::executor::codebuild::load_aws_config().await;
                Some(crate::executor::codebuild::s3_client(&cfg))
            }
            LogSource::Dir(_) => None,
        };
        LogReader { source, s3 }
    }

    /// With a given client (tests).
    pub fn with_client(source: LogSource, s3: aws_sdk_s3::Client) -> LogReader {
        LogReader {
            source,
            s3: Some(s3),
        }
    }

    /// Every record object, in name order.
    pub async fn objects(&self) -> anyhow::Result<Vec<LogObject>> {
        let mut out = Vec::new();
        match (&self.source, &self.s3) {
            (LogSource::S3 { bucket, prefix }, Some(s3)) => {
                for key in list_keys(s3, bucket, prefix).await? {
                    if key.contains(DATA_SEGMENT) || key.ends_with('/') {
                        continue;
                    }
                    let bytes = crate::executor::worker::s3_get(s3, bucket, &key).await?;
                    out.push(LogObject {
                        text: decode(&bytes).with_context(|| format!("s3://{bucket}/{key}"))?,
                        name: format!("s3://{bucket}/{key}"),
                    });
                }
            }
            (LogSource::Dir(dir), _) => {
                let mut files = Vec::new();
                walk(dir, &mut files)
                    .with_context(|| format!("reading the log directory {}", dir.display()))?;
                files.sort();
                for f in files {
                    let shown = f.display().to_string();
                    if shown.contains(DATA_SEGMENT) {
                        continue;
                    }
                    let bytes = std::fs::read(&f).with_context(|| format!("reading {shown}"))?;
                    out.push(LogObject {
                        text: decode(&bytes).with_context(|| shown.clone())?,
                        name: shown,
                    });
                }
            }
            (LogSource::S3 { .. }, None) => return Err(anyhow!("no S3 client")),
        }
        Ok(out)
    }

    /// A large body a record points to (`inputBodyS3Path`, `outputBodyS3Path`). From a
    /// directory, the object's key under the directory, else a file of the same name.
    pub async fn body(&self, s3_path: &str) -> anyhow::Result<serde_json::Value> {
        let Some(rest) = s3_path.strip_prefix("s3://") else {
            return Err(anyhow!("`{s3_path}` is not an s3:// path"));
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let bytes = match (&self.source, &self.s3) {
            (LogSource::Dir(dir), _) => {
                let direct = dir.join(key);
                let by_name = Path::new(key)
                    .file_name()
                    .and_then(|n| find_named(dir, n).ok().flatten());
                let path = if direct.is_file() {
                    direct
                } else {
                    by_name.ok_or_else(|| {
                        anyhow!(
                            "{s3_path} is not under {} (by key or by name)",
                            dir.display()
                        )
                    })?
                };
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
            }
            (_, Some(s3)) => crate::executor::worker::s3_get(s3, bucket, key).await?,
            (LogSource::S3 { .. }, None) => return Err(anyhow!("no S3 client")),
        };
        let text = decode(&bytes).with_context(|| s3_path.to_string())?;
        serde_json::from_str(&text).with_context(|| format!("{s3_path} is not JSON"))
    }
}

async fn list_keys(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "{}",
                    aws_smithy_types::error::display::DisplayErrorContext(e)
                )
            })
            .with_context(|| format!("listing s3://{bucket}/{prefix}"))?;
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        match out.next_continuation_token() {
            Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => break,
        }
    }
    keys.sort();
    Ok(keys)
}

/// Gzip (one or more members, as Bedrock writes `.json.gz`) or plain UTF-8.
fn decode(bytes: &[u8]) -> anyhow::Result<String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_string(&mut text)
            .context("not valid gzip of UTF-8 text")?;
        Ok(text)
    } else {
        String::from_utf8(bytes.to_vec()).context("not UTF-8 text")
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn find_named(dir: &Path, name: &std::ffi::OsStr) -> std::io::Result<Option<PathBuf>> {
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.sort();
    Ok(files.into_iter().find(|f| f.file_name() == Some(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(
            LogSource::parse("s3://b/AWSLogs/").unwrap(),
            LogSource::S3 {
                bucket: "b".into(),
                prefix: "AWSLogs/".into()
            }
        );
        assert_eq!(
            LogSource::parse("./logs").unwrap(),
            LogSource::Dir(PathBuf::from("./logs"))
        );
        assert!(LogSource::parse("s3:///x").is_err());
        assert!(LogSource::parse("https://x/y").is_err());
    }
}
