//! The guardrail-test plan: one ApplyGuardrail call per test, keyed by the guardrail,
//! its version and the test's text, so only changed tests (or a new version) re-run.

use serde_json::json;

use super::keys;
use crate::config::{GuardrailConfig, GuardrailTest};
use crate::execute::GuardrailRef;

/// Serialisable so a CodeBuild shard plan can carry it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PlannedGuardrailTest {
    pub test: GuardrailTest,
    pub guardrail: GuardrailRef,
    pub key: String,
}

pub fn guardrail_ref(cfg: &GuardrailConfig) -> GuardrailRef {
    GuardrailRef {
        id: cfg.guardrail_id.clone(),
        version: cfg.guardrail_version.clone(),
    }
}

pub fn plan_guardrail_tests(cfg: &GuardrailConfig) -> Vec<PlannedGuardrailTest> {
    let guardrail = guardrail_ref(cfg);
    cfg.tests
        .iter()
        .map(|t| PlannedGuardrailTest {
            key: keys::digest(
                keys::GUARDRAIL,
                &json!({
                    "guardrail": guardrail,
                    "source": t.source,
                    "input": t.input,
                }),
            ),
            test: t.clone(),
            guardrail: guardrail.clone(),
        })
        .collect()
}
