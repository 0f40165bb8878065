//! The dataset `assert` types (SPEC §2) and their validation into a [`Check`]: loading
//! and scoring share [`Assertion::compile`], so whatever the loader accepts, scoring
//! runs, and a bad assertion fails at load, naming its line, instead of scoring as a
//! miss.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::jsonpath::JsonPath;

/// Default `threshold` of the scored types that need one, chosen so a paraphrase of
/// the reference passes and an unrelated answer does not (documented on the page).
pub const DEFAULT_LEVENSHTEIN_MAX: f64 = 5.0;
pub const DEFAULT_ROUGE_L_MIN: f64 = 0.5;
pub const DEFAULT_BLEU_MIN: f64 = 0.3;

macro_rules! kinds {
    ($($variant:ident = $name:literal),* $(,)?) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum AssertionKind {
            $($variant),*
        }

        impl AssertionKind {
            /// Every type the loader accepts, in the order the page lists them.
            pub const ALL: &'static [AssertionKind] = &[$(AssertionKind::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(AssertionKind::$variant => $name),*
                }
            }
        }
    };
}

kinds! {
    Contains = "contains",
    NotContains = "not-contains",
    IContains = "icontains",
    NotIContains = "not-icontains",
    StartsWith = "starts-with",
    NotStartsWith = "not-starts-with",
    ContainsAny = "contains-any",
    NotContainsAny = "not-contains-any",
    ContainsAll = "contains-all",
    NotContainsAll = "not-contains-all",
    IContainsAny = "icontains-any",
    NotIContainsAny = "not-icontains-any",
    IContainsAll = "icontains-all",
    NotIContainsAll = "not-icontains-all",
    Regex = "regex",
    NotRegex = "not-regex",
    Equals = "equals",
    NotEquals = "not-equals",
    IsJson = "is-json",
    IsValidJson = "is-valid-json",
    NotIsValidJson = "not-is-valid-json",
    JsonSchema = "json-schema",
    JsonPath = "json-path",
    Levenshtein = "levenshtein",
    RougeL = "rouge-l",
    Bleu = "bleu",
    WordCount = "word-count",
    Latency = "latency",
    Cost = "cost",
    Similar = "similar",
    LlmRubric = "llm-rubric",
    ToolCalled = "tool-called",
    NotToolCalled = "not-tool-called",
    ToolArgsSchema = "tool-args-schema",
}

impl AssertionKind {
    /// A `not-` type passes when the check it names fails.
    pub fn negated(self) -> bool {
        self.as_str().starts_with("not-")
    }

    /// Whether the type is scored against a `threshold` (the others pass or fail).
    fn scored(self) -> bool {
        use AssertionKind::*;
        matches!(
            self,
            Levenshtein | RougeL | Bleu | Latency | Cost | Similar | LlmRubric
        )
    }

    /// Types graded by a model (the embedding evaluator, the judge) during evaluation.
    pub fn model_graded(self) -> bool {
        matches!(self, AssertionKind::Similar | AssertionKind::LlmRubric)
    }
}

impl Serialize for AssertionKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AssertionKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        if let Some(k) = AssertionKind::ALL.iter().find(|k| k.as_str() == name) {
            return Ok(*k);
        }
        // `startswith`, `is_json`, `ROUGE-L`: say which type was meant.
        let squash = |s: &str| s.to_lowercase().replace(['-', '_', ' '], "");
        let hint = AssertionKind::ALL
            .iter()
            .find(|k| squash(k.as_str()) == squash(&name))
            .map(|k| format!(" (did you mean `{}`?)", k.as_str()))
            .unwrap_or_default();
        Err(serde::de::Error::custom(format!(
            "unknown assertion type `{name}`{hint}"
        )))
    }
}

/// One entry of a case's `assert` list, as written. Absent keys are not serialised, so
/// the score key of an assertion that does not use a knob is what it was before the
/// knob existed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assertion {
    #[serde(rename = "type")]
    pub kind: AssertionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// `regex` / `not-regex` flags: `i`, `m`, `s`, `x`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<String>,
    /// The assertion's share of the case's weighted score (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// The bound of a scored type (a max distance, a min score, max ms or USD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// `word-count` bounds, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

/// What an assertion checks, with its values parsed, its regex compiled and its
/// reference text resolved.
pub enum Check {
    /// `contains`, `icontains` and the `-any` / `-all` lists: one needle is `all`.
    Contains {
        needles: Vec<String>,
        all: bool,
        fold_case: bool,
    },
    StartsWith(String),
    Regex(regex::Regex),
    Equals(String),
    Json,
    JsonSchema(Box<jsonschema::Validator>),
    JsonPath(Vec<PathCheck>),
    Levenshtein {
        reference: String,
        max: f64,
    },
    RougeL {
        reference: String,
        min: f64,
    },
    Bleu {
        reference: String,
        min: f64,
    },
    WordCount {
        min: Option<u64>,
        max: Option<u64>,
    },
    Latency {
        max_ms: f64,
    },
    Cost {
        max_usd: f64,
    },
    /// `tool-called`: the answer called the named tool (with arguments meeting every
    /// `args` json-path check, when given).
    ToolCalled {
        name: String,
        args: Vec<PathCheck>,
    },
    /// `tool-args-schema`: the answer called the tool, with arguments the schema takes.
    ToolArgsSchema {
        name: String,
        validator: Box<jsonschema::Validator>,
    },
    /// `similar` / `llm-rubric`: the grade a model gave, looked up by [`grading_key`].
    Graded {
        key: String,
        min: f64,
    },
}

/// Default minimum cosine of a `similar` assertion.
pub const DEFAULT_SIMILAR_MIN: f64 = 0.8;
/// Default minimum rubric score of an `llm-rubric` assertion.
pub const DEFAULT_RUBRIC_MIN: f64 = 0.5;

/// Where a model-graded assertion's grade is kept for the run: its type and text (the
/// reference of `similar`, the rubric of `llm-rubric`).
pub fn grading_key(kind: AssertionKind, text: &str) -> String {
    format!("{}\u{0}{text}", kind.as_str())
}

/// One `{path, equals | exists}` check of a `json-path` assertion.
pub struct PathCheck {
    pub path: JsonPath,
    /// The path as written, for messages.
    pub text: String,
    pub expect: PathExpect,
}

pub enum PathExpect {
    Equals(Value),
    Exists(bool),
}

/// An assertion ready to run: its check, whether a `not-` type inverts it, its weight,
/// and a label for failure lines (`contains "30 days"`).
pub struct Compiled {
    pub check: Check,
    pub negated: bool,
    pub weight: f64,
    pub label: String,
}

impl Assertion {
    /// Validates the assertion and prepares it; `expected` is the case's reference
    /// answer, which `levenshtein`, `rouge-l` and `bleu` use when there is no `value`.
    pub fn compile(&self, expected: Option<&str>) -> Result<Compiled, String> {
        let name = self.kind.as_str();
        self.check_knobs()?;
        let weight = self.weight.unwrap_or(1.0);
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(format!("assertion `{name}`: `weight` must be a number ≥ 0"));
        }
        use AssertionKind::*;
        let kind = self.kind;
        let check = match kind {
            Contains | NotContains | IContains | NotIContains => Check::Contains {
                needles: vec![self.text()?.to_string()],
                all: true,
                fold_case: matches!(kind, IContains | NotIContains),
            },
            ContainsAny | NotContainsAny | ContainsAll | NotContainsAll | IContainsAny
            | NotIContainsAny | IContainsAll | NotIContainsAll => Check::Contains {
                needles: self.text_list()?,
                all: matches!(
                    kind,
                    ContainsAll | NotContainsAll | IContainsAll | NotIContainsAll
                ),
                fold_case: matches!(
                    kind,
                    IContainsAny | NotIContainsAny | IContainsAll | NotIContainsAll
                ),
            },
            StartsWith | NotStartsWith => Check::StartsWith(self.text()?.to_string()),
            Equals | NotEquals => Check::Equals(self.text()?.to_string()),
            Regex | NotRegex => Check::Regex(self.regex()?),
            IsJson | IsValidJson | NotIsValidJson => Check::Json,
            JsonSchema => {
                let schema = self
                    .value
                    .as_ref()
                    .ok_or("assertion `json-schema` needs a `value` (the schema)")?;
                let v = jsonschema::validator_for(schema)
                    .map_err(|e| format!("assertion `json-schema` has an invalid schema: {e}"))?;
                Check::JsonSchema(Box::new(v))
            }
            JsonPath => Check::JsonPath(self.path_checks()?),
            Levenshtein => Check::Levenshtein {
                reference: self.reference(expected)?,
                max: self.bound(DEFAULT_LEVENSHTEIN_MAX, f64::INFINITY)?,
            },
            RougeL => Check::RougeL {
                reference: self.reference(expected)?,
                min: self.bound(DEFAULT_ROUGE_L_MIN, 1.0)?,
            },
            Bleu => Check::Bleu {
                reference: self.reference(expected)?,
                min: self.bound(DEFAULT_BLEU_MIN, 1.0)?,
            },
            WordCount => self.word_count()?,
            Latency => Check::Latency {
                max_ms: self.required_bound("the most milliseconds the generation may take")?,
            },
            Cost => Check::Cost {
                max_usd: self.required_bound("the most USD the generation may cost")?,
            },
            Similar => Check::Graded {
                key: grading_key(kind, &self.reference(expected)?),
                min: self.bound(DEFAULT_SIMILAR_MIN, 1.0)?,
            },
            LlmRubric => Check::Graded {
                key: grading_key(kind, self.text()?),
                min: self.bound(DEFAULT_RUBRIC_MIN, 1.0)?,
            },
            ToolCalled | NotToolCalled => self.tool_called()?,
            ToolArgsSchema => self.tool_args_schema()?,
        };
        Ok(Compiled {
            check,
            negated: kind.negated(),
            weight,
            label: self.label(),
        })
    }

    /// Refuses keys the type does not use, so a misplaced knob is not silently ignored.
    fn check_knobs(&self) -> Result<(), String> {
        use AssertionKind::*;
        let name = self.kind.as_str();
        let kind = self.kind;
        let misplaced = [
            (
                "flags",
                self.flags.is_some() && !matches!(kind, Regex | NotRegex),
            ),
            ("threshold", self.threshold.is_some() && !self.kind.scored()),
            ("min", self.min.is_some() && kind != WordCount),
            ("max", self.max.is_some() && kind != WordCount),
            (
                "value",
                self.value.is_some()
                    && matches!(kind, Latency | Cost | IsValidJson | NotIsValidJson),
            ),
        ];
        match misplaced.iter().find(|(_, bad)| *bad) {
            Some((key, _)) => Err(format!("assertion `{name}` takes no `{key}`")),
            None => Ok(()),
        }
    }

    fn text(&self) -> Result<&str, String> {
        self.value
            .as_ref()
            .and_then(Value::as_str)
            .ok_or_else(|| format!("assertion `{}` needs a string `value`", self.kind.as_str()))
    }

    fn text_list(&self) -> Result<Vec<String>, String> {
        let bad = || {
            format!(
                "assertion `{}` needs a `value` that is a non-empty list of strings",
                self.kind.as_str()
            )
        };
        let items = self
            .value
            .as_ref()
            .and_then(Value::as_array)
            .ok_or_else(bad)?;
        let texts: Option<Vec<String>> = items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect();
        texts.filter(|t| !t.is_empty()).ok_or_else(bad)
    }

    fn regex(&self) -> Result<regex::Regex, String> {
        let name = self.kind.as_str();
        let mut b = regex::RegexBuilder::new(self.text()?);
        for f in self.flags.as_deref().unwrap_or_default().chars() {
            match f {
                'i' => b.case_insensitive(true),
                'm' => b.multi_line(true),
                's' => b.dot_matches_new_line(true),
                'x' => b.ignore_whitespace(true),
                other => {
                    return Err(format!(
                        "assertion `{name}`: unknown flag `{other}` (the flags are i, m, s and x)"
                    ))
                }
            };
        }
        b.build()
            .map_err(|e| format!("assertion `{name}` does not compile: {e}"))
    }

    /// `tool-args-schema`'s `value`: `{"name": <tool>, "schema": <JSON Schema>}`.
    fn tool_args_schema(&self) -> Result<Check, String> {
        let bad = || {
            "assertion `tool-args-schema` needs a `value` {\"name\": <tool name>, \"schema\": <JSON Schema>}".to_string()
        };
        let v = self
            .value
            .as_ref()
            .and_then(Value::as_object)
            .ok_or_else(bad)?;
        if v.keys().any(|k| k != "name" && k != "schema") {
            return Err(bad());
        }
        let name = v.get("name").and_then(Value::as_str).ok_or_else(bad)?;
        let schema = v.get("schema").ok_or_else(bad)?;
        let validator = jsonschema::validator_for(schema)
            .map_err(|e| format!("assertion `tool-args-schema` has an invalid schema: {e}"))?;
        Ok(Check::ToolArgsSchema {
            name: name.to_string(),
            validator: Box::new(validator),
        })
    }

    /// `tool-called`: a tool name, or `{"name": …, "args": <json-path checks>}` checked
    /// against the call's arguments.
    fn tool_called(&self) -> Result<Check, String> {
        let kind = self.kind.as_str();
        match &self.value {
            Some(Value::String(name)) => Ok(Check::ToolCalled {
                name: name.clone(),
                args: Vec::new(),
            }),
            Some(Value::Object(o)) => {
                if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "name" | "args")) {
                    return Err(format!(
                        "assertion `{kind}`: unknown key `{k}` (the value has `name` and `args`)"
                    ));
                }
                let name = o
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("assertion `{kind}` needs a string `name`"))?;
                let args = match o.get("args") {
                    None => Vec::new(),
                    Some(v) => Self::path_checks_in(v, kind)?,
                };
                Ok(Check::ToolCalled {
                    name: name.to_string(),
                    args,
                })
            }
            _ => Err(format!(
                "assertion `{kind}` needs a string `value` (a tool name), or `{{\"name\", \"args\"}}`"
            )),
        }
    }

    fn path_checks(&self) -> Result<Vec<PathCheck>, String> {
        match &self.value {
            Some(v) => Self::path_checks_in(v, "json-path"),
            None => Self::path_checks_in(&Value::Null, "json-path"),
        }
    }

    /// `{"path", "equals" | "exists"}` checks, one or a list, of assertion `kind`.
    fn path_checks_in(value: &Value, kind: &str) -> Result<Vec<PathCheck>, String> {
        let bad = |why: String| format!("assertion `{kind}`: {why}");
        let items: Vec<&Value> = match value {
            Value::Array(items) if !items.is_empty() => items.iter().collect(),
            one @ Value::Object(_) => vec![one],
            _ => return Err(bad(
                "needs a `value`: one `{\"path\": \"$.a\", \"equals\": …}` check or a list of them"
                    .into(),
            )),
        };
        items
            .into_iter()
            .map(|item| {
                let obj = item
                    .as_object()
                    .ok_or_else(|| bad(format!("{item} is not a `{{\"path\", …}}` check")))?;
                if let Some(k) = obj
                    .keys()
                    .find(|k| !matches!(k.as_str(), "path" | "equals" | "exists"))
                {
                    return Err(bad(format!(
                        "unknown key `{k}` (a check has `path` and `equals` or `exists`)"
                    )));
                }
                let text = obj
                    .get("path")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("a check needs a string `path`".into()))?;
                let expect = match (obj.get("equals"), obj.get("exists")) {
                    (Some(_), Some(_)) => {
                        return Err(bad(format!(
                            "`{text}`: give `equals` or `exists`, not both"
                        )))
                    }
                    (Some(v), None) => PathExpect::Equals(v.clone()),
                    (None, Some(Value::Bool(b))) => PathExpect::Exists(*b),
                    (None, Some(_)) => {
                        return Err(bad(format!("`{text}`: `exists` is true or false")))
                    }
                    (None, None) => PathExpect::Exists(true),
                };
                Ok(PathCheck {
                    path: JsonPath::parse(text).map_err(bad)?,
                    text: text.to_string(),
                    expect,
                })
            })
            .collect()
    }

    /// What a model must grade for this assertion, when it is model-graded: the
    /// reference text of `similar` (its `value`, else `expected`), the rubric of
    /// `llm-rubric`.
    pub fn graded_text(&self, expected: Option<&str>) -> Option<Result<String, String>> {
        match self.kind {
            AssertionKind::Similar => Some(self.reference(expected)),
            AssertionKind::LlmRubric => Some(self.text().map(str::to_string)),
            _ => None,
        }
    }

    /// The text a similarity type compares with: its `value`, else the case's
    /// `expected`.
    fn reference(&self, expected: Option<&str>) -> Result<String, String> {
        let name = self.kind.as_str();
        match (&self.value, expected) {
            (Some(Value::String(s)), _) => Ok(s.clone()),
            (Some(_), _) => Err(format!("assertion `{name}`: `value` must be a string")),
            (None, Some(e)) => Ok(e.to_string()),
            (None, None) => Err(format!(
                "assertion `{name}` needs a string `value` or the case's `expected`"
            )),
        }
    }

    /// `threshold`, or `default` when absent; it must lie in 0..=`most`.
    fn bound(&self, default: f64, most: f64) -> Result<f64, String> {
        let t = self.threshold.unwrap_or(default);
        if t.is_finite() && (0.0..=most).contains(&t) {
            Ok(t)
        } else if most.is_finite() {
            Err(format!(
                "assertion `{}`: `threshold` must lie in 0..{most}",
                self.kind.as_str()
            ))
        } else {
            Err(format!(
                "assertion `{}`: `threshold` must be a number ≥ 0",
                self.kind.as_str()
            ))
        }
    }

    fn required_bound(&self, meaning: &str) -> Result<f64, String> {
        if self.threshold.is_none() {
            return Err(format!(
                "assertion `{}` needs a `threshold` ({meaning})",
                self.kind.as_str()
            ));
        }
        self.bound(0.0, f64::INFINITY)
    }

    /// `min`/`max` keys, or promptfoo's `value`: an exact count or `{min, max}`.
    fn word_count(&self) -> Result<Check, String> {
        let bad = || {
            "assertion `word-count` needs `min` and/or `max` (whole numbers), or a `value` \
             that is a count or `{\"min\", \"max\"}`"
                .to_string()
        };
        let (min, max) = match &self.value {
            None => (self.min, self.max),
            Some(_) if self.min.is_some() || self.max.is_some() => return Err(bad()),
            Some(Value::Number(n)) => {
                let n = n.as_u64().ok_or_else(bad)?;
                (Some(n), Some(n))
            }
            Some(Value::Object(o)) => {
                if o.keys().any(|k| k != "min" && k != "max") {
                    return Err(bad());
                }
                let get = |k: &str| match o.get(k) {
                    None => Ok(None),
                    Some(v) => v.as_u64().map(Some).ok_or_else(bad),
                };
                (get("min")?, get("max")?)
            }
            Some(_) => return Err(bad()),
        };
        match (min, max) {
            (None, None) => Err(bad()),
            (Some(lo), Some(hi)) if lo > hi => Err(format!(
                "assertion `word-count`: `min` ({lo}) is above `max` ({hi})"
            )),
            _ => Ok(Check::WordCount { min, max }),
        }
    }

    /// `type` and a short rendering of `value`, for failure lines.
    fn label(&self) -> String {
        const MAX_CHARS: usize = 60;
        let name = self.kind.as_str();
        let Some(v) = &self.value else {
            return name.to_string();
        };
        if self.kind == AssertionKind::JsonSchema {
            return name.to_string();
        }
        if self.kind == AssertionKind::ToolArgsSchema {
            // The schema is long; the tool it checks is what a reader needs.
            return match v.get("name") {
                Some(tool) => format!("{name} {tool}"),
                None => name.to_string(),
            };
        }
        let shown = v.to_string();
        if shown.chars().count() <= MAX_CHARS {
            format!("{name} {shown}")
        } else {
            let cut: String = shown.chars().take(MAX_CHARS).collect();
            format!("{name} {cut}…")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Compiled, String> {
        let a: Assertion = serde_json::from_value(v).map_err(|e| e.to_string())?;
        a.compile(None)
    }

    #[test]
    fn every_type_round_trips_its_name() {
        for k in AssertionKind::ALL {
            let back: AssertionKind = serde_json::from_value(json!(k.as_str())).unwrap();
            assert_eq!(back, *k);
            assert_eq!(serde_json::to_value(k).unwrap(), json!(k.as_str()));
        }
        let err = serde_json::from_value::<AssertionKind>(json!("startswith")).unwrap_err();
        assert!(
            err.to_string().contains("did you mean `starts-with`?"),
            "{err}"
        );
    }

    #[test]
    fn an_assertion_without_knobs_serialises_as_before() {
        // The score key and the weakening check hash this: it must not change.
        let a: Assertion =
            serde_json::from_value(json!({"type": "contains", "value": "x"})).unwrap();
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"type":"contains","value":"x"}"#
        );
    }

    #[test]
    fn wrong_shapes_and_misplaced_knobs_are_refused() {
        let cases = [
            (
                json!({"type": "contains-any", "value": "a"}),
                "non-empty list of strings",
            ),
            (
                json!({"type": "contains-all", "value": []}),
                "non-empty list of strings",
            ),
            (
                json!({"type": "icontains-any", "value": ["a", 1]}),
                "list of strings",
            ),
            (json!({"type": "starts-with"}), "needs a string `value`"),
            (json!({"type": "regex", "value": "("}), "does not compile"),
            (
                json!({"type": "regex", "value": "a", "flags": "g"}),
                "unknown flag `g`",
            ),
            (
                json!({"type": "contains", "value": "a", "flags": "i"}),
                "takes no `flags`",
            ),
            (
                json!({"type": "contains", "value": "a", "threshold": 0.5}),
                "takes no `threshold`",
            ),
            (
                json!({"type": "contains", "value": "a", "weight": -1}),
                "`weight` must be",
            ),
            (json!({"type": "levenshtein"}), "or the case's `expected`"),
            (
                json!({"type": "levenshtein", "value": 3}),
                "must be a string",
            ),
            (
                json!({"type": "rouge-l", "value": "a", "threshold": 1.5}),
                "must lie in 0..1",
            ),
            (json!({"type": "latency"}), "needs a `threshold`"),
            (json!({"type": "cost", "threshold": -1}), "≥ 0"),
            (
                json!({"type": "latency", "value": 10, "threshold": 10}),
                "takes no `value`",
            ),
            (json!({"type": "word-count"}), "needs `min` and/or `max`"),
            (json!({"type": "tool-called"}), "needs a string `value`"),
            (
                json!({"type": "tool-args-schema", "value": {"schema": {}}}),
                "needs a `value` {\"name\"",
            ),
            (
                json!({"type": "tool-args-schema", "value": {"name": "f", "schema": {}, "x": 1}}),
                "needs a `value` {\"name\"",
            ),
            (
                json!({"type": "tool-args-schema", "value": {"name": "f", "schema": {"type": 3}}}),
                "has an invalid schema",
            ),
            (
                json!({"type": "word-count", "min": 5, "max": 2}),
                "is above `max`",
            ),
            (json!({"type": "word-count", "value": "ten"}), "needs `min`"),
            (
                json!({"type": "json-path", "value": "$.a"}),
                "needs a `value`",
            ),
            (
                json!({"type": "json-path", "value": {"path": "$..a"}}),
                "JSONPath `$..a`",
            ),
            (
                json!({"type": "json-path", "value": {"path": "$.a", "eq": 1}}),
                "unknown key `eq`",
            ),
            (
                json!({"type": "json-path", "value": {"path": "$.a", "equals": 1, "exists": true}}),
                "not both",
            ),
            (
                json!({"type": "json-schema", "value": {"type": 3}}),
                "invalid schema",
            ),
        ];
        for (v, want) in cases {
            match parse(v.clone()) {
                Ok(_) => panic!("{v} was accepted"),
                Err(e) => assert!(e.contains(want), "{v}: {e}"),
            }
        }
    }

    #[test]
    fn defaults_and_references() {
        let c = parse(json!({"type": "rouge-l", "value": "x"})).unwrap();
        assert!(matches!(c.check, Check::RougeL { min, .. } if min == DEFAULT_ROUGE_L_MIN));
        let a: Assertion = serde_json::from_value(json!({"type": "bleu"})).unwrap();
        let c = a.compile(Some("the reference")).unwrap();
        assert!(
            matches!(&c.check, Check::Bleu { reference, min } if reference == "the reference" && *min == DEFAULT_BLEU_MIN)
        );
        let c =
            parse(json!({"type": "not-contains-any", "value": ["a", "b"], "weight": 2})).unwrap();
        assert!(c.negated && c.weight == 2.0);
        assert_eq!(c.label, "not-contains-any [\"a\",\"b\"]");
        let c = parse(json!({"type": "word-count", "value": {"max": 3}})).unwrap();
        assert!(matches!(
            c.check,
            Check::WordCount {
                min: None,
                max: Some(3)
            }
        ));
    }
}
