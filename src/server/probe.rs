//! `promptgate healthcheck`: asks a running service's readiness endpoint, so the image's
//! `HEALTHCHECK` needs no curl in the runtime layer.

use std::time::Duration;

use anyhow::Context;

use crate::settings::Settings;

/// The readiness URL of the service these settings describe: its listen address (a
/// wildcard bind asked on loopback) and `/readyz`.
pub fn default_url(settings: &Settings) -> anyhow::Result<String> {
    let addr = settings.listen_addr()?;
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    Ok(format!("http://{host}:{}/readyz", addr.port()))
}

/// GETs `url` within `timeout`: exit code 0 when it answers 2xx, 1 otherwise, with one
/// line saying what it answered (what `docker inspect` shows of a failing probe).
pub async fn healthcheck(
    url: &str,
    timeout: Duration,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<u8> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .context("building the HTTP client")?;
    match client.get(url).send().await {
        Ok(r) if r.status().is_success() => {
            writeln!(out, "ready: {url} answered {}", r.status().as_u16())?;
            Ok(0)
        }
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            writeln!(out, "not ready: {url} answered {status}: {}", body.trim())?;
            Ok(1)
        }
        Err(e) => {
            writeln!(out, "not ready: {url}: {e}")?;
            Ok(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_listen(listen: &str) -> Settings {
        let vars = [("PROMPTGATE_LISTEN".to_string(), listen.to_string())];
        Settings::load(None, |k| {
            vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|e| panic!("{e:#}"))
    }

    #[test]
    fn the_default_url_asks_loopback_for_a_wildcard_bind() {
        assert_eq!(
            default_url(&with_listen("0.0.0.0:8080")).unwrap(),
            "http://127.0.0.1:8080/readyz"
        );
        assert_eq!(
            default_url(&with_listen("127.0.0.1:9000")).unwrap(),
            "http://127.0.0.1:9000/readyz"
        );
        assert_eq!(
            default_url(&with_listen("[::]:8080")).unwrap(),
            "http://[::1]:8080/readyz"
        );
    }
}
