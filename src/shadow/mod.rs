//! Amazon Bedrock model invocation logs (SPEC §10): where they are read from, the
//! published record format (`schemaType: ModelInvocationLog`), and the deterministic
//! sample a shadow replay sends again.

pub mod records;
pub mod source;

pub use records::{parse_objects, Invocation, ParsedLogs, Skipped};
pub use source::LogSource;

use sha2::{Digest, Sha256};

/// The eligible records a run replays: the `n` whose SHA-256 of `requestId` sorts
/// first. A stable hash, so the same logs give the same sample on every run and
/// machine, and a larger `n` keeps every request a smaller one picked.
pub fn sample(mut eligible: Vec<Invocation>, n: usize) -> Vec<Invocation> {
    eligible.sort_by_cached_key(|r| {
        (
            hex::encode(Sha256::digest(r.request_id.as_bytes())),
            r.request_id.clone(),
        )
    });
    eligible.dedup_by(|a, b| a.request_id == b.request_id);
    eligible.truncate(n);
    eligible
}
