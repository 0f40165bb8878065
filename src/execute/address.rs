//! Where a model call may connect. An endpoint passes the allowlist by its URL, but a
//! URL's host name can resolve anywhere: to a cloud metadata service, to the bot's own
//! loopback, to a private network. The HTTP client resolves names through
//! [`GuardedResolver`], which checks the addresses it is about to connect to, and IP
//! literals (which skip resolution) are checked by [`check_literal`].
//!
//! - Link-local addresses (169.254.0.0/16, fe80::/10) and fd00::/8 (where cloud
//!   metadata lives) are refused always: no model server is there.
//! - Loopback and private addresses are refused when a host *name* resolves to them,
//!   unless the operator lists that name in `PROMPTGATE_MODEL_PRIVATE_HOSTS`
//!   (`localhost` is always allowed: what is written is where it goes). An IP literal
//!   in an allowed endpoint is taken as written.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// An address no model call may reach, whatever the URL says.
pub fn is_metadata_range(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            (first & 0xffc0) == 0xfe80 || (first & 0xff00) == 0xfd00
        }
    }
}

/// Loopback, private, unique-local or unspecified: inside the bot's own network.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_unspecified() || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || v6.is_unspecified() || (first & 0xfe00) == 0xfc00
        }
    }
}

/// Why an IP-literal host may not be called, if it may not.
pub fn check_literal(host: &str) -> Result<(), String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) if is_metadata_range(ip) => Err(format!(
            "{ip} is a link-local (cloud metadata) address; model calls never go there"
        )),
        _ => Ok(()),
    }
}

/// Resolves host names with the system resolver, then drops what a name may not
/// reach (see the module docs); a name left with no address is an error.
#[derive(Clone, Debug, Default)]
pub struct GuardedResolver {
    /// `PROMPTGATE_MODEL_PRIVATE_HOSTS`: names allowed to resolve to internal addresses.
    private_hosts: Arc<Vec<String>>,
}

impl GuardedResolver {
    pub fn new(private_hosts: Vec<String>) -> Self {
        Self {
            private_hosts: Arc::new(
                private_hosts
                    .into_iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
            ),
        }
    }

    /// Reads `PROMPTGATE_MODEL_PRIVATE_HOSTS` (comma-separated host names).
    pub fn from_env() -> Self {
        Self::new(
            std::env::var("PROMPTGATE_MODEL_PRIVATE_HOSTS")
                .map(|v| crate::settings::split_list(&v))
                .unwrap_or_default(),
        )
    }

    /// The addresses of `host` (already resolved) that a call may connect to.
    pub fn allowed(&self, host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, String> {
        let host = host.to_ascii_lowercase();
        let private_ok = host == "localhost" || self.private_hosts.contains(&host);
        let (kept, refused): (Vec<_>, Vec<_>) = addrs
            .into_iter()
            .partition(|a| !is_metadata_range(a.ip()) && (private_ok || !is_internal(a.ip())));
        if kept.is_empty() {
            let shown: Vec<String> = refused.iter().map(|a| a.ip().to_string()).collect();
            return Err(format!(
                "{host} resolves to {} only, an internal or metadata address that model calls may not reach (the operator can list the host in PROMPTGATE_MODEL_PRIVATE_HOSTS)",
                if shown.is_empty() { "nothing".to_string() } else { shown.join(", ") }
            ));
        }
        Ok(kept)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept = this.allowed(&host, addrs)?;
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().unwrap(), 0)
    }

    #[test]
    fn metadata_is_never_reached_and_names_do_not_reach_inside() {
        let r = GuardedResolver::new(vec!["litellm.internal".into()]);
        let err = r
            .allowed("evil.example", vec![addr("169.254.169.254")])
            .unwrap_err();
        assert!(err.contains("169.254.169.254"), "{err}");
        assert!(r.allowed("evil.example", vec![addr("127.0.0.1")]).is_err());
        assert!(r.allowed("evil.example", vec![addr("10.1.2.3")]).is_err());
        assert!(r
            .allowed("evil.example", vec![addr("fd00:ec2::254")])
            .is_err());
        // Mixed answers keep only the public address.
        let kept = r
            .allowed(
                "mixed.example",
                vec![addr("10.0.0.1"), addr("93.184.216.34")],
            )
            .unwrap();
        assert_eq!(kept, vec![addr("93.184.216.34")]);
        // Names the operator listed, and localhost, may be internal; never metadata.
        assert!(r
            .allowed("litellm.internal", vec![addr("10.1.2.3")])
            .is_ok());
        assert!(r.allowed("localhost", vec![addr("127.0.0.1")]).is_ok());
        assert!(r
            .allowed("litellm.internal", vec![addr("169.254.169.254")])
            .is_err());
        assert!(check_literal("169.254.169.254").is_err());
        assert!(check_literal("[fe80::1]").is_err());
        assert!(check_literal("127.0.0.1").is_ok());
    }
}
