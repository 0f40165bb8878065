//! The JSONPath subset a `json-path` assertion names: `$`, then any number of `.key`,
//! `['key']` (or `["key"]`) and `[index]` steps, a negative index counting from the
//! end. Wildcards, recursion, slices and filters are refused at load, so a path that
//! this subset cannot express is an error rather than a silent miss.

use serde_json::Value;

/// One step from a value to a child.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Key(String),
    Index(i64),
}

/// A parsed path; [`JsonPath::select`] follows it through a document.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonPath(Vec<Step>);

impl JsonPath {
    pub fn parse(path: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("JSONPath `{path}`: {why}");
        let mut rest = path
            .trim()
            .strip_prefix('$')
            .ok_or_else(|| bad("must start with `$`"))?;
        let mut steps = Vec::new();
        while let Some(c) = rest.chars().next() {
            match c {
                '.' => {
                    let name_end = rest[1..].find(['.', '[']).map_or(rest.len(), |i| i + 1);
                    let name = &rest[1..name_end];
                    if name.is_empty() || name == "*" || name.starts_with('.') {
                        return Err(bad("`.` needs a key name (no `..` or `*`)"));
                    }
                    steps.push(Step::Key(name.to_string()));
                    rest = &rest[name_end..];
                }
                '[' => {
                    let close = rest.find(']').ok_or_else(|| bad("a `[` is not closed"))?;
                    let inner = rest[1..close].trim();
                    let quoted = ['\'', '"'].iter().find_map(|q| {
                        inner
                            .strip_prefix(*q)
                            .and_then(|s| s.strip_suffix(*q))
                            .filter(|s| !s.contains(*q))
                    });
                    let step = match quoted {
                        Some(key) => Step::Key(key.to_string()),
                        None => Step::Index(inner.parse().map_err(|_| {
                            bad("`[…]` holds an integer index or a quoted key (no `*`, slices or filters)")
                        })?),
                    };
                    steps.push(step);
                    rest = &rest[close + 1..];
                }
                _ => return Err(bad("expected `.key`, `['key']` or `[index]`")),
            }
        }
        Ok(JsonPath(steps))
    }

    /// The value at this path in `doc`, if there is one.
    pub fn select<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        self.0.iter().try_fold(doc, |v, step| match step {
            Step::Key(k) => v.as_object()?.get(k),
            Step::Index(i) => {
                let items = v.as_array()?;
                let at = if *i < 0 {
                    items
                        .len()
                        .checked_sub(usize::try_from(i.unsigned_abs()).ok()?)?
                } else {
                    usize::try_from(*i).ok()?
                };
                items.get(at)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_keys_quoted_keys_and_indices() {
        let doc = json!({"a": {"b": [10, {"c d": true}]}, "queue": "billing"});
        let at = |p: &str| JsonPath::parse(p).unwrap().select(&doc).cloned();
        assert_eq!(at("$"), Some(doc.clone()));
        assert_eq!(at("$.queue"), Some(json!("billing")));
        assert_eq!(at("$.a.b[0]"), Some(json!(10)));
        assert_eq!(at("$['a'][\"b\"][1]['c d']"), Some(json!(true)));
        assert_eq!(at("$.a.b[-1]['c d']"), Some(json!(true)));
        assert_eq!(at("$.a.b[2]"), None);
        assert_eq!(at("$.a.b[-3]"), None);
        assert_eq!(at("$.queue.x"), None);
        assert_eq!(at("$.missing"), None);
    }

    #[test]
    fn refuses_what_the_subset_cannot_express() {
        for p in [
            "a.b",
            "$..a",
            "$.*",
            "$.a[*]",
            "$.a[0:2]",
            "$.a[?(@.x)]",
            "$.a[0",
            "$.",
            "$x",
        ] {
            assert!(JsonPath::parse(p).is_err(), "{p}");
        }
    }
}
