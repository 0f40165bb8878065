//! Signature checks over the raw request body, in constant time.
//!
//! * GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
//! * GitLab: `X-Gitlab-Token: <secret>` sent in clear; both sides are hashed with
//!   SHA-256 and the digests compared with `subtle`, so neither the content nor the
//!   length of the configured secret leaks through timing (Atlantis CVE-2022-24912).
//!
//! Several secrets may be configured (rotation): every one is tried, without an early
//! exit on the first match.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::settings::Secret;

pub const GITHUB_SIGNATURE_HEADER: &str = "x-hub-signature-256";
pub const GITLAB_TOKEN_HEADER: &str = "x-gitlab-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature header is missing")]
    Missing,
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature does not match any configured secret")]
    Mismatch,
    #[error("no secret is configured")]
    NoSecret,
}

/// Checks GitHub's `X-Hub-Signature-256` value against every secret.
pub fn verify_github(
    secrets: &[Secret],
    header: Option<&str>,
    body: &[u8],
) -> Result<(), VerifyError> {
    if secrets.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    let header = header.ok_or(VerifyError::Missing)?;
    let hex_sig = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(VerifyError::Malformed)?;
    let sig = hex::decode(hex_sig).map_err(|_| VerifyError::Malformed)?;
    if sig.len() != 32 {
        return Err(VerifyError::Malformed);
    }
    let mut ok = false;
    for secret in secrets {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
            continue;
        };
        mac.update(body);
        // verify_slice compares in constant time.
        ok |= mac.verify_slice(&sig).is_ok();
    }
    if ok {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Checks GitLab's `X-Gitlab-Token` value against every secret.
pub fn verify_gitlab(secrets: &[Secret], header: Option<&str>) -> Result<(), VerifyError> {
    if secrets.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    let token = header.ok_or(VerifyError::Missing)?;
    let got = Sha256::digest(token.as_bytes());
    let mut ok = Choice::from(0u8);
    for secret in secrets {
        let want = Sha256::digest(secret.expose().as_bytes());
        ok |= got.as_slice().ct_eq(want.as_slice());
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// HMAC-SHA256 of `bytes` under `key`: the one used for webhook, run-link and shard
/// signatures. HMAC accepts keys of any length, so the empty result on a refused key
/// cannot happen; callers still treat an empty MAC as no match.
pub fn hmac_sha256(key: &[u8], bytes: &[u8]) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(bytes);
    mac.finalize().into_bytes().to_vec()
}

/// `sha256=<hex>` for `body` under `secret`: what GitHub sends (for tests and tools).
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), body))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(v: &[&str]) -> Vec<Secret> {
        v.iter().map(|s| Secret::new(*s)).collect()
    }

    #[test]
    fn github_docs_vector() {
        // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let s = secrets(&["It's a Secret to Everybody"]);
        assert_eq!(verify_github(&s, Some(sig), b"Hello, World!"), Ok(()));
        assert_eq!(
            github_signature("It's a Secret to Everybody", b"Hello, World!"),
            sig
        );
        assert_eq!(
            verify_github(&s, Some(sig), b"Hello, World?"),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_github(&s, None, b"Hello, World!"),
            Err(VerifyError::Missing)
        );
        assert_eq!(
            verify_github(&s, Some("sha1=abcd"), b"x"),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify_github(&s, Some("sha256=zz"), b"x"),
            Err(VerifyError::Malformed)
        );
        // Rotation: the matching secret may be anywhere in the list.
        let s = secrets(&["old", "It's a Secret to Everybody"]);
        assert_eq!(verify_github(&s, Some(sig), b"Hello, World!"), Ok(()));
        assert_eq!(
            verify_github(&[], Some(sig), b"Hello, World!"),
            Err(VerifyError::NoSecret)
        );
    }

    #[test]
    fn gitlab_token() {
        let s = secrets(&["one", "two"]);
        assert_eq!(verify_gitlab(&s, Some("two")), Ok(()));
        assert_eq!(verify_gitlab(&s, Some("tw")), Err(VerifyError::Mismatch));
        assert_eq!(verify_gitlab(&s, Some("")), Err(VerifyError::Mismatch));
        assert_eq!(verify_gitlab(&s, None), Err(VerifyError::Missing));
        assert_eq!(verify_gitlab(&[], Some("one")), Err(VerifyError::NoSecret));
    }
}
