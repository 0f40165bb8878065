//! Content keys: SHA-256 over a canonical JSON encoding (object keys sorted, no
//! whitespace), with a domain tag so keys of different kinds never collide.
//!
//! The encoder sorts keys itself rather than trusting `serde_json::Map`'s order, which
//! changes when any crate in the build enables serde_json's `preserve_order`.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Domain tags; bump the version when what goes into a key changes.
pub const INPUT: &str = "promptgate/input/v1";
pub const SCORE: &str = "promptgate/score/v1";
pub const JUDGE: &str = "promptgate/judge/v1";
pub const EMBED: &str = "promptgate/embed/v1";
pub const FILES: &str = "promptgate/files/v1";
pub const INJECT: &str = "promptgate/inject/v1";
pub const GUARDRAIL: &str = "promptgate/guardrail/v1";

/// Hex SHA-256 of `domain`, a NUL byte, and the canonical encoding of `value`.
pub fn digest(domain: &str, value: &Value) -> String {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    h.update([0u8]);
    let mut buf = String::new();
    canonical(value, &mut buf);
    h.update(buf.as_bytes());
    hex::encode(h.finalize())
}

/// Writes the canonical encoding of `value` into `out`.
pub fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(*k) {
                    canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter() {
        let a = json!({"b": 1, "a": {"y": [1, 2], "x": "s"}});
        let b = json!({"a": {"x": "s", "y": [1, 2]}, "b": 1});
        assert_eq!(digest(INPUT, &a), digest(INPUT, &b));
        let mut s = String::new();
        canonical(&a, &mut s);
        assert_eq!(s, r#"{"a":{"x":"s","y":[1,2]},"b":1}"#);
    }

    #[test]
    fn domains_and_values_separate_keys() {
        let v = json!({"a": 1});
        assert_ne!(digest(INPUT, &v), digest(SCORE, &v));
        assert_ne!(digest(INPUT, &v), digest(INPUT, &json!({"a": 2})));
        assert_eq!(digest(INPUT, &v).len(), 64);
    }
}
