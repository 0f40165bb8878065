//! Who may read a run page. A run's report holds prompts, outputs and scores: private
//! data. Its id in the URL is random (128 bits, never the row id), and the page needs one
//! of three things: a signed, expiring link (what the bot posts in statuses and
//! comments), HTTP basic auth against `PROMPTGATE_WEB_USERS`, or the user header an
//! authenticating proxy in front of the bot sets (`PROMPTGATE_WEB_AUTH_HEADER`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::settings::Settings;

/// How long a posted link opens its page. Statuses stay on a PR for good; a reviewer
/// who finds an expired link signs in (basic auth or the proxy) instead.
pub const LINK_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

/// A random public id for a run (32 hex characters).
pub fn new_public_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Signs and checks run links with a key the operator set, or one derived from the
/// webhook secrets, so every replica signs alike and links survive restarts.
#[derive(Clone)]
pub struct LinkSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(<redacted>)")
    }
}

impl LinkSigner {
    /// `PROMPTGATE_WEB_SECRET`, else derived from the first webhook secret (GitHub,
    /// then GitLab), else a random key (links then last as long as the process).
    pub fn from_settings(s: &Settings) -> Self {
        let seed = s
            .web_secret
            .as_ref()
            .or_else(|| s.github_webhook_secret.first())
            .or_else(|| s.gitlab_webhook_secret.first());
        match seed {
            Some(secret) => {
                let mut h = Sha256::new();
                h.update(b"promptgate run links\0");
                h.update(secret.expose().as_bytes());
                Self {
                    key: h.finalize().into(),
                }
            }
            None => Self::random(),
        }
    }

    pub fn random() -> Self {
        Self {
            key: rand::random(),
        }
    }

    fn mac(&self, public_id: &str, expires: u64) -> Vec<u8> {
        crate::webhook::verify::hmac_sha256(&self.key, format!("{public_id}.{expires}").as_bytes())
    }

    /// `{base}/runs/{public_id}?exp=…&sig=…`, valid for [`LINK_LIFETIME`] from `now`.
    pub fn url(&self, base: &str, public_id: &str, now: SystemTime) -> String {
        let expires = unix(now).saturating_add(LINK_LIFETIME.as_secs());
        let sig =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.mac(public_id, expires));
        format!(
            "{}/runs/{public_id}?exp={expires}&sig={sig}",
            base.trim_end_matches('/')
        )
    }

    /// The link's signature is ours, for this run, and has not expired.
    pub fn verify(&self, public_id: &str, expires: u64, sig: &str, now: SystemTime) -> bool {
        if expires < unix(now) {
            return false;
        }
        let Ok(given) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig) else {
            return false;
        };
        let want = self.mac(public_id, expires);
        !want.is_empty() && bool::from(want.ct_eq(&given))
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `Authorization: Basic …` matches one of `PROMPTGATE_WEB_USERS`: `user:<bcrypt hash>`
/// (`htpasswd -B`'s `$2y$…`), `user:sha256:<hex>` or `user:<64 hex digits>` (the
/// password's SHA-256), or `user:password` for a trial. Compared in constant time.
pub fn basic_auth_ok(s: &Settings, authorization: Option<&str>) -> bool {
    let Some(encoded) = authorization.and_then(|a| a.strip_prefix("Basic ")) else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return false;
    };
    let Some((user, password)) = decoded.split_once(':') else {
        return false;
    };
    s.web_users.iter().any(|entry| {
        let Some((u, stored)) = entry.expose().split_once(':') else {
            return false;
        };
        let user_ok: bool = u.as_bytes().ct_eq(user.as_bytes()).into();
        let sha256 = |hash: &str| -> bool {
            hex::encode(Sha256::digest(password.as_bytes()))
                .as_bytes()
                .ct_eq(hash.to_ascii_lowercase().as_bytes())
                .into()
        };
        let password_ok = if stored.starts_with("$2") {
            user_ok && bcrypt::verify(password, stored).unwrap_or(false)
        } else if let Some(hash) = stored.strip_prefix("sha256:") {
            sha256(hash)
        } else if stored.len() == 64 && stored.bytes().all(|b| b.is_ascii_hexdigit()) {
            sha256(stored)
        } else {
            stored.as_bytes().ct_eq(password.as_bytes()).into()
        };
        user_ok & password_ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_bound_to_the_run_and_expire() {
        let signer = LinkSigner::random();
        let now = SystemTime::now();
        let url = signer.url("https://pg.example/", "abc", now);
        let query = url.split_once('?').unwrap().1;
        let (exp, sig) = query.split_once('&').unwrap();
        let exp: u64 = exp.trim_start_matches("exp=").parse().unwrap();
        let sig = sig.trim_start_matches("sig=");
        assert!(url.starts_with("https://pg.example/runs/abc?exp="));
        assert!(signer.verify("abc", exp, sig, now));
        assert!(!signer.verify("abd", exp, sig, now), "another run");
        assert!(!signer.verify("abc", exp + 1, sig, now), "another expiry");
        assert!(
            !signer.verify("abc", exp, sig, now + LINK_LIFETIME * 2),
            "expired"
        );
        assert!(
            !LinkSigner::random().verify("abc", exp, sig, now),
            "another key"
        );
        assert_eq!(new_public_id().len(), 32);
        assert_ne!(new_public_id(), new_public_id());
    }

    fn with_users(users: &[&str]) -> Settings {
        Settings {
            web_users: users
                .iter()
                .map(|u| crate::settings::Secret::new(*u))
                .collect(),
            ..Settings::default()
        }
    }

    fn basic(cred: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(cred)
        )
    }

    #[test]
    fn web_users_take_bcrypt_sha256_or_plain_entries() {
        let bcrypted = bcrypt::hash("pw-b", 4).unwrap();
        let sha = hex::encode(Sha256::digest(b"pw-s"));
        let s = with_users(&[
            &format!("bea:{bcrypted}"),
            &format!("sam:{sha}"),
            "pat:pw-p",
        ]);
        for (cred, want) in [
            ("bea:pw-b", true),
            ("bea:pw-x", false),
            ("sam:pw-s", true),
            (&format!("sam:{sha}") as &str, false),
            ("pat:pw-p", true),
            ("pat:pw-b", false),
            ("eve:pw-p", false),
        ] {
            assert_eq!(basic_auth_ok(&s, Some(&basic(cred))), want, "{cred}");
        }
        assert!(!basic_auth_ok(&s, None));
        assert!(!basic_auth_ok(&s, Some("Bearer pat:pw-p")));
        assert!(!basic_auth_ok(&s, Some("Basic %%%")));
    }
}
