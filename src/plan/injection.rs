//! The injection plan: attacks planted into a sample of a suite's cases, rendered
//! through the real templates, each with its own input key (so editing one attack, or
//! the prompt, re-runs exactly the attack runs it changes).

use serde_json::json;

use super::{input_key, keys, Renderer, SuiteFiles};
use crate::config::repo::DEFAULT_INJECTION_SAMPLE;
use crate::config::SuiteConfig;
use crate::diag::{Diagnostic, Diagnostics};
use crate::execute::Message;
use crate::inject::{self, Attack, Planted};

/// Serialisable so a CodeBuild shard plan can carry it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PlannedAttack {
    pub case_id: String,
    pub attack: Attack,
    pub planted: Planted,
    pub messages: Vec<Message>,
    pub key: String,
}

impl PlannedAttack {
    /// Identifies the same attack run at base and head.
    pub fn run_id(&self) -> (String, String) {
        (self.case_id.clone(), self.attack.id.clone())
    }
}

/// The cases that carry attacks: a stable sample, by hash of the case id, so adding a
/// case elsewhere in the file does not move the sample.
fn sample(files: &SuiteFiles, n: usize) -> Vec<&crate::config::Case> {
    let mut cases: Vec<_> = files
        .dataset
        .cases
        .iter()
        .map(|c| (keys::digest(keys::INJECT, &json!({ "sample": c.id })), c))
        .collect();
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    cases.into_iter().take(n).map(|(_, c)| c).collect()
}

/// Plans every (sampled case, attack) run of a suite at one revision.
pub fn plan_attacks(
    suite: &SuiteConfig,
    files: &SuiteFiles,
) -> Result<Vec<PlannedAttack>, Diagnostics> {
    let renderer = Renderer::new(&files.templates)?;
    let spec = files.manifest.spec();
    let corpus = inject::merge(inject::builtin(), files.attacks.clone());
    let n = suite.injection.sample.unwrap_or(DEFAULT_INJECTION_SAMPLE);
    let mut diags = Diagnostics::default();
    let mut runs = Vec::new();
    for case in sample(files, n) {
        for attack in &corpus {
            let seed = keys::digest(
                keys::INJECT,
                &json!({ "case": case.id, "attack": inject::attack_digest(attack) }),
            );
            let planted = inject::plant(attack, &case.vars, &suite.untrusted_vars, &seed);
            let mut messages = match renderer.messages(suite, &planted.vars) {
                Ok(m) => m,
                Err((path, e)) => {
                    diags.push(Diagnostic::new(
                        path,
                        e.line(),
                        format!(
                            "does not render for case `{}` ({}:{}) with attack `{}` planted: {e}",
                            case.id, files.dataset.file, case.line, attack.id
                        ),
                    ));
                    continue;
                }
            };
            // The canary goes in the system prompt: if it comes out, the prompt leaked.
            match messages.iter_mut().find(|m| m.role == "system") {
                Some(system) => {
                    system.content.push_str("\n\n");
                    system.content.push_str(&planted.system_suffix);
                }
                None => messages.insert(0, Message::new("system", planted.system_suffix.clone())),
            }
            let key = input_key(&spec, &messages, 0, files.watch_digest.as_deref());
            runs.push(PlannedAttack {
                case_id: case.id.clone(),
                attack: attack.clone(),
                planted,
                messages,
                key,
            });
        }
    }
    if diags.is_empty() {
        Ok(runs)
    } else {
        Err(diags)
    }
}
