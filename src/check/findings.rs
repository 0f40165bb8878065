//! What a ticket could be opened for (SPEC §1 `tickets`): hallucinated cases,
//! injection failures and regressed cases at head, over the whole suite (a known error
//! in an unaffected case is still a known error). The check lists them; only the bot
//! files them.

use serde_json::json;

use super::security::AttackOutcome;
use super::suite_plan::{CaseJob, PlannedSuite};
use crate::config::tickets::Finding;
use crate::plan::keys;
use crate::report::Ticket;
use crate::score::CaseScores;

/// Domain tag of ticket identities.
const TICKET: &str = "promptgate/ticket/v1";

/// Longest input or output excerpt a ticket carries.
const EXCERPT_CHARS: usize = 600;

/// The identity of a finding: the output it is about (the content key of the
/// generation), so a re-run or another PR that produces the same output finds the
/// same ticket, and a changed output is a new finding.
pub fn ticket_key(suite: &str, case: &str, finding: Finding, output_key: &str) -> String {
    keys::digest(
        TICKET,
        &json!({"suite": suite, "case": case, "finding": finding.as_str(), "output": output_key}),
    )
}

pub(super) fn findings(
    p: &PlannedSuite,
    jobs: &[CaseJob<'_>],
    head: &[CaseScores],
    attacks: &[AttackOutcome],
    regressed: &[String],
) -> Vec<Ticket> {
    let files: Vec<String> = p
        .suite
        .prompts
        .roles()
        .into_iter()
        .map(|(_, path)| path.to_string())
        .chain([p.suite.model.clone()])
        .collect();
    let ticket =
        |job: &CaseJob<'_>, finding: Finding, output_key: &str, output: &str, reason| Ticket {
            suite: p.name.clone(),
            case: job.head.case.id.clone(),
            finding,
            key: ticket_key(&p.name, &job.head.case.id, finding, output_key),
            issue: None,
            new: false,
            status: None,
            input: clean(&input_of(job)),
            output: clean(output),
            reason,
            files: files.clone(),
        };
    let mut out = Vec::new();
    for (job, scores) in jobs.iter().zip(head) {
        // The first sample the judge flagged: its own output and key.
        let flagged = scores
            .samples
            .iter()
            .enumerate()
            .find(|(_, s)| s.judge.as_ref().is_some_and(|j| j.hallucination));
        if let Some((i, s)) = flagged {
            let reason = s
                .judge
                .as_ref()
                .map(|j| clean(&j.reason))
                .unwrap_or_default();
            let key = job.head.input_keys.get(i).map_or("", String::as_str);
            out.push(ticket(
                job,
                Finding::Hallucination,
                key,
                &s.output,
                format!("the judge flagged the answer as unsupported: {reason}"),
            ));
        }
        if regressed.contains(&job.head.case.id) {
            let key = job.head.input_keys.first().map_or("", String::as_str);
            let output = scores.samples.first().map_or("", |s| s.output.as_str());
            let reason = match &scores.error {
                Some(e) => format!("passed at base, errors at head: {}", clean(e)),
                None => "passed at base, fails at head".to_string(),
            };
            out.push(ticket(job, Finding::Regressed, key, output, reason));
        }
    }
    for a in attacks {
        let (Some(f), Some(job)) = (&a.finding, jobs.iter().find(|j| j.head.case.id == a.case))
        else {
            continue;
        };
        let key = keys::digest(
            keys::INJECT,
            &json!({"attack": a.attack, "case": job.head.input_keys.first()}),
        );
        out.push(ticket(
            job,
            Finding::Injection,
            &key,
            &f.evidence,
            format!(
                "attack `{}` ({}) succeeded: {}",
                a.attack,
                a.technique,
                clean(&f.evidence)
            ),
        ));
    }
    out
}

/// The last user message of the case at head (what the end user asked).
fn input_of(job: &CaseJob<'_>) -> String {
    job.head
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .or(job.head.messages.last())
        .map(|m| m.content.clone())
        .unwrap_or_default()
}

/// Credentials and personal data out, and short: ticket text leaves the run.
fn clean(text: &str) -> String {
    let text = redact_pii(&crate::inject::redact(text));
    if text.chars().count() <= EXCERPT_CHARS {
        text
    } else {
        let mut s: String = text.chars().take(EXCERPT_CHARS).collect();
        s.push('…');
        s
    }
}

/// Replaces e-mail addresses and long digit runs (phone, card and account numbers)
/// with placeholders.
pub fn redact_pii(text: &str) -> String {
    static RES: std::sync::OnceLock<Vec<(regex::Regex, &'static str)>> = std::sync::OnceLock::new();
    let res = RES.get_or_init(|| {
        [
            (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", "[EMAIL]"),
            // 9+ digits, allowing spaces, dots and dashes between groups.
            (r"\+?\d(?:[ .-]?\d){8,}", "[NUMBER]"),
        ]
        .into_iter()
        .filter_map(|(re, with)| regex::Regex::new(re).ok().map(|r| (r, with)))
        .collect()
    });
    let mut out = text.to_string();
    for (re, with) in res {
        out = re.replace_all(&out, *with).into_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pii_is_replaced() {
        assert_eq!(
            redact_pii("mail jane.doe@example.com or call +1 415-555-0100 re 4111 1111 1111 1111"),
            "mail [EMAIL] or call [NUMBER] re [NUMBER]"
        );
        assert_eq!(
            redact_pii("within 30 days, order 12345"),
            "within 30 days, order 12345"
        );
    }

    #[test]
    fn keys_follow_the_output() {
        let a = ticket_key("s", "c", Finding::Hallucination, "k1");
        assert_eq!(a, ticket_key("s", "c", Finding::Hallucination, "k1"));
        assert_ne!(a, ticket_key("s", "c", Finding::Hallucination, "k2"));
        assert_ne!(a, ticket_key("s", "c", Finding::Regressed, "k1"));
        assert_eq!(a.len(), 64);
    }
}
