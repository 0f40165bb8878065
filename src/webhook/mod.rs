//! Webhook intake: verify a delivery's signature over the raw body
//! ([`verify`]), then normalise the GitHub or GitLab payload into a forge-independent
//! [`Event`](crate::event::Event) ([`github`], [`gitlab`]).
//!
//! Verification happens in the HTTP handler, before anything is stored; parsing happens
//! in the worker, on the stored bytes.

pub mod github;
pub mod gitlab;
pub mod verify;

use crate::event::{Event, ForgeKind};

/// The event names of comment deliveries (GitHub, GitLab): what may hold commands.
pub const COMMENT_EVENTS: [&str; 2] = [github::ISSUE_COMMENT, gitlab::NOTE_HOOK];

/// Parses a verified delivery body of `forge` with the event header `event`.
/// A body that does not parse is an error (the delivery is marked failed with it).
pub fn parse(forge: ForgeKind, event: &str, body: &[u8]) -> anyhow::Result<Event> {
    match forge {
        ForgeKind::Github => github::parse(event, body),
        ForgeKind::Gitlab => gitlab::parse(event, body),
    }
}
