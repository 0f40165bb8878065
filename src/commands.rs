//! The slash-command grammar (SPEC §6): pure text in, commands out, no I/O.
//!
//! ```text
//! /promptgate run [SUITE...] [--full]
//! /promptgate run load [SUITE...]
//! /promptgate approve
//! /promptgate cancel
//! /promptgate help
//! ```
//!
//! Rules, chosen so that a command only runs when someone plainly typed it:
//!
//! - A comment is a *command comment* only when its first non-blank line starts with
//!   `/promptgate` as a whole word (`/promptgatex` is not). Other comments yield nothing,
//!   so prose that mentions a command later on never triggers it.
//! - In a command comment, every line that starts with `/promptgate` is a command, except
//!   inside fenced code blocks (```` ``` ```` or `~~~`, CommonMark rules: the closing
//!   fence uses the same character and is at least as long; an unclosed fence runs to
//!   the end) and block quotes (a `>` line, and the lines that lazily continue it up to
//!   the next blank line, as GitHub renders them), nor in HTML comments (`<!-- … -->`
//!   starting a line), which do not render at all. A quoted or hidden
//!   `/promptgate approve` never runs.
//! - Line endings are normalised (CRLF, as the taskcluster captures show) and leading
//!   whitespace is ignored. Indented code blocks are not recognised: a line indented by
//!   four spaces still counts, which is what the contract's "leading whitespace trimmed"
//!   asks for.
//! - Words are separated by any run of spaces or tabs. `/promptgate` and the command
//!   name are case-sensitive lower case, like bors: `/promptgate RUN` is an unknown
//!   command (the error says commands are lower case) and `/PromptGate run` is not a
//!   command line at all.
//! - Suite names match `[a-z0-9_-]+` (SPEC §1) and are deduplicated keeping their order;
//!   a word starting with `-` is always a flag, so `--full` may appear anywhere after
//!   `run`. Whether a suite exists is the bot's business, not the parser's.
//! - A bare `/promptgate`, an unknown command, an unknown flag, a bad suite name and
//!   arguments to `approve`, `cancel` or `help` are [`ParseError`]s naming the problem;
//!   the bot answers them with [`help_text`].

use std::collections::VecDeque;

/// The word that starts every command line.
pub const PREFIX: &str = "/promptgate";

/// The help reply's template, embedded so the binary needs no files at run time.
const HELP_TEMPLATE: &str = include_str!("../comment-templates/help.md.j2");

/// User text quoted in an error is cut to this many characters, so a pasted blob does not
/// come back as a wall of text in the reply.
const MAX_QUOTED: usize = 40;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Re-run now: only `suites` when not empty, every case when `full`; `run load`
    /// also runs those suites' load tests.
    Run {
        suites: Vec<String>,
        full: bool,
        load: bool,
        /// An approver runs a run that is over budget.
        confirm: bool,
    },
    Approve,
    Cancel,
    Help,
}

impl Command {
    /// The command word, for logs, metrics and permission messages.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Run { .. } => "run",
            Command::Approve => "approve",
            Command::Cancel => "cancel",
            Command::Help => "help",
        }
    }

    /// The canonical spelling (`/promptgate run a b --full`), recorded in the audit log
    /// so that two spellings of the same command read the same there.
    pub fn to_text(&self) -> String {
        let mut text = format!("{PREFIX} {}", self.name());
        if let Command::Run {
            suites,
            full,
            load,
            confirm,
        } = self
        {
            if *load {
                text.push_str(" load");
            }
            for s in suites {
                text.push(' ');
                text.push_str(s);
            }
            if *full {
                text.push_str(" --full");
            }
            if *confirm {
                text.push_str(" --confirm");
            }
        }
        text
    }
}

/// A command line the bot cannot run; `line` is 1-based within the comment.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Every command in a comment, in order; empty when the comment is not a command comment.
pub fn parse(body: &str) -> Vec<Result<Command, ParseError>> {
    let lines = visible_lines(body);
    let first = lines.iter().find(|(_, text, _)| !text.trim().is_empty());
    match first {
        Some((_, text, true)) if is_command_line(text) => {}
        _ => return Vec::new(),
    }
    lines
        .iter()
        .filter(|(_, text, visible)| *visible && is_command_line(text))
        .map(|(line, text, _)| {
            parse_line(text).map_err(|message| ParseError {
                line: *line,
                message,
            })
        })
        .collect()
}

/// The commands of an edited comment that were not in its previous text.
///
/// Commands are matched as a multiset, ignoring line numbers: editing the prose around
/// `/promptgate run` does not run it again, fixing `/promptgate aprove` into
/// `/promptgate approve` runs the approval, and adding a second `/promptgate run` runs
/// once more. Errors are matched by their message, so an edit does not repeat a help
/// reply for a typo that was already answered.
pub fn new_commands(previous: Option<&str>, current: &str) -> Vec<Result<Command, ParseError>> {
    let mut seen: Vec<Result<Command, String>> = previous
        .map(parse)
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.map_err(|e| e.message))
        .collect();
    parse(current)
        .into_iter()
        .filter(|item| {
            let key = item.clone().map_err(|e| e.message);
            match seen.iter().position(|s| *s == key) {
                Some(i) => {
                    let _matched = seen.swap_remove(i);
                    false
                }
                None => true,
            }
        })
        .collect()
}

/// The help reply (markdown), naming `error` first when there is one. Rendered with
/// minijinja from `comment-templates/help.md.j2`, through the comment's filters so that
/// the quoted error cannot break the markdown or mention anyone.
pub fn help_text(error: Option<&str>) -> Result<String, minijinja::Error> {
    let env = crate::report::markdown::environment(None);
    env.render_str(HELP_TEMPLATE, minijinja::context! { error => error })
}

/// `(1-based line number, text, visible)` for every line; `visible` is false inside
/// fenced code blocks, block quotes and HTML comments.
fn visible_lines(body: &str) -> Vec<(usize, &str, bool)> {
    let mut out = Vec::new();
    // The open fence: its character and length.
    let mut fence: Option<(char, usize)> = None;
    let mut in_quote = false;
    let mut in_html_comment = false;
    for (i, raw) in body.split('\n').enumerate() {
        let text = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = text.trim_start();
        let visible = if let Some((ch, len)) = fence {
            if closes_fence(trimmed, ch, len) {
                fence = None;
            }
            false
        } else if in_html_comment || trimmed.starts_with("<!--") {
            in_html_comment = html_comment_open_after(text, in_html_comment);
            false
        } else if let Some(open) = opens_fence(trimmed) {
            fence = Some(open);
            in_quote = false;
            false
        } else {
            // A comment opened mid-line hides the lines after it, as it does when
            // rendered: `text <!--` then `/promptgate approve` must not run.
            in_html_comment = html_comment_open_after(text, false);
            if trimmed.starts_with('>') {
                in_quote = true;
                false
            } else if trimmed.is_empty() {
                in_quote = false;
                true
            } else {
                !in_quote
            }
        };
        out.push((i + 1, text, visible));
    }
    out
}

/// Whether an HTML comment is still open at the end of `line`, given whether one was
/// open at its start.
fn html_comment_open_after(line: &str, mut open: bool) -> bool {
    let mut rest = line;
    loop {
        let (token, now_open) = if open { ("-->", false) } else { ("<!--", true) };
        match rest.find(token) {
            Some(at) => {
                rest = &rest[at + token.len()..];
                open = now_open;
            }
            None => return open,
        }
    }
}

/// A line that opens a fenced code block: three or more backticks or tildes.
fn opens_fence(trimmed: &str) -> Option<(char, usize)> {
    let ch = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = trimmed.chars().take_while(|c| *c == ch).count();
    // A backtick fence's info string may not contain a backtick (CommonMark).
    let info_ok = ch == '~' || !trimmed[len..].contains('`');
    (len >= 3 && info_ok).then_some((ch, len))
}

fn closes_fence(trimmed: &str, ch: char, open_len: usize) -> bool {
    let len = trimmed.chars().take_while(|c| *c == ch).count();
    len >= open_len && trimmed[len * ch.len_utf8()..].trim().is_empty()
}

/// A line whose first word is exactly `/promptgate`.
fn is_command_line(text: &str) -> bool {
    text.trim_start()
        .strip_prefix(PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
}

/// Parses one command line (known to start with `/promptgate`); the error is the message
/// shown to the person who wrote it.
fn parse_line(text: &str) -> Result<Command, String> {
    let mut words: VecDeque<&str> = text.split_whitespace().skip(1).collect();
    let Some(name) = words.pop_front() else {
        return Err(format!(
            "`{PREFIX}` needs a command: run, approve, cancel or help"
        ));
    };
    let no_arguments = |command: Command| match words.front() {
        None => Ok(command),
        Some(arg) => Err(format!(
            "{} takes no arguments, got {}",
            command.name(),
            quoted(arg)
        )),
    };
    match name {
        "run" => parse_run(words),
        "approve" => no_arguments(Command::Approve),
        "cancel" => no_arguments(Command::Cancel),
        "help" => no_arguments(Command::Help),
        other
            if matches!(
                other.to_lowercase().as_str(),
                "run" | "approve" | "cancel" | "help"
            ) =>
        {
            Err(format!(
                "unknown command {} (commands are lower case)",
                quoted(other)
            ))
        }
        other => Err(format!("unknown command {}", quoted(other))),
    }
}

fn parse_run(mut words: VecDeque<&str>) -> Result<Command, String> {
    let mut suites: Vec<String> = Vec::new();
    let mut full = false;
    let mut confirm = false;
    // `run load [SUITE...]` (SPEC §6): `load` first is the sub-command, not a suite.
    let load = words.front() == Some(&"load");
    if load {
        words.pop_front();
    }
    for word in words {
        if word == "--full" {
            full = true;
        } else if word == "--confirm" {
            confirm = true;
        } else if word.starts_with('-') {
            return Err(format!(
                "unknown flag {} for run (the flags are --full and --confirm)",
                quoted(word)
            ));
        } else if !is_suite_name(word) {
            return Err(format!(
                "invalid suite name {}: suite names are made of a-z, 0-9, _ and -",
                quoted(word)
            ));
        } else if !suites.iter().any(|s| s == word) {
            suites.push(word.to_string());
        }
    }
    Ok(Command::Run {
        suites,
        full,
        load,
        confirm,
    })
}

/// `[a-z0-9_-]+`, the suite name grammar of SPEC §1.
fn is_suite_name(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `"word"`, cut to [`MAX_QUOTED`] characters.
fn quoted(word: &str) -> String {
    if word.chars().count() > MAX_QUOTED {
        let cut: String = word.chars().take(MAX_QUOTED).collect();
        format!("\"{cut}…\"")
    } else {
        format!("\"{word}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(suites: &[&str], full: bool) -> Command {
        Command::Run {
            suites: suites.iter().map(|s| s.to_string()).collect(),
            full,
            load: false,
            confirm: false,
        }
    }

    #[test]
    fn run_load_is_a_sub_command() {
        let parsed = parse("/promptgate run load billing --full");
        let Some(Ok(Command::Run {
            suites, full, load, ..
        })) = parsed.first()
        else {
            panic!("{parsed:?}")
        };
        assert_eq!(
            (suites.as_slice(), *full, *load),
            (&["billing".to_string()][..], true, true)
        );
        assert_eq!(
            parsed[0].as_ref().unwrap().to_text(),
            "/promptgate run load billing --full"
        );
        // A suite called `load` is still reachable after another name.
        let parsed = parse("/promptgate run other load");
        assert!(
            matches!(&parsed[0], Ok(Command::Run { load: false, suites, .. }) if suites.len() == 2)
        );
    }

    type Parsed = Vec<Result<Command, ParseError>>;

    fn err(line: usize, message: &str) -> Result<Command, ParseError> {
        Err(ParseError {
            line,
            message: message.to_string(),
        })
    }

    /// `(name, comment body, expected commands)`.
    fn table() -> Vec<(&'static str, &'static str, Parsed)> {
        vec![
            // Plain commands.
            ("run", "/promptgate run", vec![Ok(run(&[], false))]),
            ("approve", "/promptgate approve", vec![Ok(Command::Approve)]),
            ("cancel", "/promptgate cancel", vec![Ok(Command::Cancel)]),
            ("help", "/promptgate help", vec![Ok(Command::Help)]),
            (
                "trailing newline",
                "/promptgate approve\n",
                vec![Ok(Command::Approve)],
            ),
            // Not command comments.
            ("empty", "", vec![]),
            ("blank", "  \n\t\n", vec![]),
            ("prose", "LGTM, thanks!", vec![]),
            (
                "command after prose",
                "Looks good.\n/promptgate approve",
                vec![],
            ),
            ("glued word", "/promptgatex run", vec![]),
            ("glued suffix", "/promptgate-bot run", vec![]),
            ("upper-case prefix", "/PromptGate run", vec![]),
            ("mention style", "@promptgate run", vec![]),
            ("inline code", "`/promptgate approve`", vec![]),
            // Whitespace and line endings.
            (
                "leading blank lines and indent",
                "\n\n   /promptgate approve",
                vec![Ok(Command::Approve)],
            ),
            (
                "extra spaces and tabs",
                "/promptgate \t run\t  a   b \t--full  ",
                vec![Ok(run(&["a", "b"], true))],
            ),
            (
                "crlf",
                "/promptgate run support-answer\r\n\r\nplease\r\n/promptgate cancel\r\n",
                vec![Ok(run(&["support-answer"], false)), Ok(Command::Cancel)],
            ),
            (
                "crlf fence",
                "/promptgate help\r\n```\r\n/promptgate approve\r\n```\r\n/promptgate cancel",
                vec![Ok(Command::Help), Ok(Command::Cancel)],
            ),
            (
                "several commands and prose",
                "/promptgate run a\nthen\n/promptgate approve\nnot /promptgate cancel",
                vec![Ok(run(&["a"], false)), Ok(Command::Approve)],
            ),
            // Run arguments.
            ("full", "/promptgate run --full", vec![Ok(run(&[], true))]),
            (
                "full first",
                "/promptgate run --full a",
                vec![Ok(run(&["a"], true))],
            ),
            (
                "full twice",
                "/promptgate run --full --full",
                vec![Ok(run(&[], true))],
            ),
            (
                "suite names",
                "/promptgate run support-answer faq_2 x",
                vec![Ok(run(&["support-answer", "faq_2", "x"], false))],
            ),
            (
                "duplicate suites keep order",
                "/promptgate run b a b a c",
                vec![Ok(run(&["b", "a", "c"], false))],
            ),
            (
                "upper-case suite",
                "/promptgate run Support",
                vec![err(
                    1,
                    "invalid suite name \"Support\": suite names are made of a-z, 0-9, _ and -",
                )],
            ),
            (
                "suite with a dot",
                "/promptgate run a.b",
                vec![err(
                    1,
                    "invalid suite name \"a.b\": suite names are made of a-z, 0-9, _ and -",
                )],
            ),
            (
                "unknown flag",
                "/promptgate run --fast",
                vec![err(
                    1,
                    "unknown flag \"--fast\" for run (the flags are --full and --confirm)",
                )],
            ),
            (
                "single dash flag",
                "/promptgate run -f",
                vec![err(
                    1,
                    "unknown flag \"-f\" for run (the flags are --full and --confirm)",
                )],
            ),
            // Errors.
            (
                "bare prefix",
                "/promptgate",
                vec![err(
                    1,
                    "`/promptgate` needs a command: run, approve, cancel or help",
                )],
            ),
            (
                "bare prefix with spaces",
                "/promptgate   \t",
                vec![err(
                    1,
                    "`/promptgate` needs a command: run, approve, cancel or help",
                )],
            ),
            (
                "typo",
                "/promptgate aprove",
                vec![err(1, "unknown command \"aprove\"")],
            ),
            (
                "upper-case command",
                "/promptgate RUN",
                vec![err(1, "unknown command \"RUN\" (commands are lower case)")],
            ),
            (
                "approve with an argument",
                "/promptgate approve now",
                vec![err(1, "approve takes no arguments, got \"now\"")],
            ),
            (
                "cancel with an argument",
                "/promptgate cancel --full",
                vec![err(1, "cancel takes no arguments, got \"--full\"")],
            ),
            (
                "help with an argument",
                "/promptgate help run",
                vec![err(1, "help takes no arguments, got \"run\"")],
            ),
            (
                "long word is cut",
                "/promptgate aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                vec![err(
                    1,
                    "unknown command \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…\"",
                )],
            ),
            (
                "error line numbers",
                "/promptgate run\n\n/promptgate bogus\n/promptgate approve",
                vec![
                    Ok(run(&[], false)),
                    err(3, "unknown command \"bogus\""),
                    Ok(Command::Approve),
                ],
            ),
            // Code blocks.
            (
                "backtick fence",
                "/promptgate run\n```\n/promptgate approve\n```",
                vec![Ok(run(&[], false))],
            ),
            (
                "tilde fence with info string",
                "/promptgate run\n~~~text\n/promptgate approve\n~~~\n/promptgate cancel",
                vec![Ok(run(&[], false)), Ok(Command::Cancel)],
            ),
            (
                "longer fence needs a longer close",
                "/promptgate run\n````\n```\n/promptgate approve\n````\n/promptgate cancel",
                vec![Ok(run(&[], false)), Ok(Command::Cancel)],
            ),
            (
                "tilde does not close a backtick fence",
                "/promptgate run\n```\n~~~\n/promptgate approve\n```",
                vec![Ok(run(&[], false))],
            ),
            (
                "unclosed fence runs to the end",
                "/promptgate run\n```\n/promptgate approve",
                vec![Ok(run(&[], false))],
            ),
            (
                "fence with text after it does not close",
                "/promptgate run\n```\n``` not a close\n/promptgate approve\n```",
                vec![Ok(run(&[], false))],
            ),
            (
                "indented fence",
                "/promptgate run\n  ```sh\n  /promptgate approve\n  ```",
                vec![Ok(run(&[], false))],
            ),
            (
                "comment starting with a fence",
                "```\n/promptgate approve\n```",
                vec![],
            ),
            // Quotes.
            (
                "quote",
                "/promptgate run\n> /promptgate approve",
                vec![Ok(run(&[], false))],
            ),
            (
                "quote without space",
                "/promptgate run\n>/promptgate approve",
                vec![Ok(run(&[], false))],
            ),
            (
                "nested quote",
                "/promptgate run\n> > /promptgate approve",
                vec![Ok(run(&[], false))],
            ),
            (
                "lazy quote continuation",
                "/promptgate run\n> you wrote\n/promptgate approve",
                vec![Ok(run(&[], false))],
            ),
            (
                "a blank line ends the quote",
                "/promptgate run\n> you wrote\n\n/promptgate approve",
                vec![Ok(run(&[], false)), Ok(Command::Approve)],
            ),
            // HTML comments do not render, so they do not command.
            (
                "hidden block",
                "/promptgate run\n<!--\n/promptgate approve\n-->\n/promptgate cancel",
                vec![Ok(run(&[], false)), Ok(Command::Cancel)],
            ),
            (
                "one-line html comment",
                "/promptgate run\n<!-- note -->\n/promptgate cancel",
                vec![Ok(run(&[], false)), Ok(Command::Cancel)],
            ),
            (
                "unclosed html comment runs to the end",
                "/promptgate run\n<!-- /promptgate approve\n/promptgate cancel",
                vec![Ok(run(&[], false))],
            ),
            (
                "an html comment opened mid-line hides the next lines",
                "/promptgate run\nsee <!-- hidden\n/promptgate approve\n-->\n/promptgate cancel",
                vec![Ok(run(&[], false)), Ok(Command::Cancel)],
            ),
            (
                "a mid-line comment closed on its line hides nothing after",
                "/promptgate run\nsee <!-- x --> here\n/promptgate cancel",
                vec![Ok(run(&[], false)), Ok(Command::Cancel)],
            ),
            (
                "a comment reopened after closing stays open",
                "/promptgate run\n<!-- a --> b <!--\n/promptgate approve",
                vec![Ok(run(&[], false))],
            ),
            (
                "a comment closed and reopened on one hidden line stays open",
                "/promptgate run\n<!--\nx --> y <!-- z\n/promptgate approve\n-->\n/promptgate cancel",
                vec![Ok(run(&[], false)), Ok(Command::Cancel)],
            ),
            (
                "comment starting with a hidden command",
                "<!-- x -->\n/promptgate approve",
                vec![],
            ),
            (
                "comment starting with a quote",
                "> /promptgate approve\n\n/promptgate run",
                vec![],
            ),
        ]
    }

    #[test]
    fn parses_the_table() {
        for (name, body, expected) in table() {
            assert_eq!(parse(body), expected, "case {name:?}: {body:?}");
        }
    }

    #[test]
    fn to_text_is_canonical_and_parses_back() {
        let cases = [
            (run(&[], false), "/promptgate run"),
            (run(&[], true), "/promptgate run --full"),
            (run(&["a", "b"], true), "/promptgate run a b --full"),
            (Command::Approve, "/promptgate approve"),
            (Command::Cancel, "/promptgate cancel"),
            (Command::Help, "/promptgate help"),
        ];
        for (command, text) in cases {
            assert_eq!(command.to_text(), text);
            assert_eq!(parse(text), vec![Ok(command.clone())], "{text}");
        }
        assert_eq!(
            parse("/promptgate run --full b  a b")[0]
                .as_ref()
                .map(Command::to_text),
            Ok("/promptgate run b a --full".to_string())
        );
    }

    #[test]
    fn names() {
        assert_eq!(run(&[], false).name(), "run");
        assert_eq!(Command::Approve.name(), "approve");
        assert_eq!(Command::Cancel.name(), "cancel");
        assert_eq!(Command::Help.name(), "help");
    }

    #[test]
    fn error_display_names_the_line() {
        let e = parse("/promptgate run\n/promptgate aprove")
            .into_iter()
            .find_map(Result::err)
            .unwrap();
        assert_eq!(e.to_string(), "line 2: unknown command \"aprove\"");
    }

    /// `(name, previous, current, expected new commands)`.
    fn edits() -> Vec<(&'static str, Option<&'static str>, &'static str, Parsed)> {
        vec![
            (
                "no previous text",
                None,
                "/promptgate run",
                vec![Ok(run(&[], false))],
            ),
            (
                "unchanged",
                Some("/promptgate run"),
                "/promptgate run",
                vec![],
            ),
            (
                "prose edited around a command",
                Some("/promptgate run\nplease"),
                "/promptgate run\nplease, thanks",
                vec![],
            ),
            (
                "crlf does not make it new",
                Some("/promptgate run a\n/promptgate cancel"),
                "/promptgate run a\r\n/promptgate cancel\r\n",
                vec![],
            ),
            (
                "same command, other spelling",
                Some("/promptgate run a --full"),
                "/promptgate  run --full a a",
                vec![],
            ),
            (
                "command added",
                Some("/promptgate run"),
                "/promptgate run\n/promptgate approve",
                vec![Ok(Command::Approve)],
            ),
            (
                "command repeated",
                Some("/promptgate run"),
                "/promptgate run\n/promptgate run",
                vec![Ok(run(&[], false))],
            ),
            (
                "typo fixed",
                Some("/promptgate aprove"),
                "/promptgate approve",
                vec![Ok(Command::Approve)],
            ),
            (
                "typo kept while text moves does not repeat the help",
                Some("/promptgate run\n/promptgate aprove"),
                "/promptgate run\n\n\n/promptgate aprove",
                vec![],
            ),
            (
                "new typo",
                Some("/promptgate run"),
                "/promptgate run\n/promptgate cancle",
                vec![err(2, "unknown command \"cancle\"")],
            ),
            (
                "arguments changed",
                Some("/promptgate run a"),
                "/promptgate run b",
                vec![Ok(run(&["b"], false))],
            ),
            (
                "previous was prose",
                Some("thinking about it"),
                "/promptgate approve",
                vec![Ok(Command::Approve)],
            ),
            (
                "command removed",
                Some("/promptgate run\n/promptgate approve"),
                "/promptgate run",
                vec![],
            ),
            (
                "command moved into a quote",
                Some("/promptgate run"),
                "/promptgate help\n> /promptgate run",
                vec![Ok(Command::Help)],
            ),
            (
                "quoted command unquoted",
                Some("/promptgate help\n> /promptgate approve"),
                "/promptgate help\n/promptgate approve",
                vec![Ok(Command::Approve)],
            ),
            (
                "no longer a command comment",
                Some("/promptgate run"),
                "never mind\n/promptgate approve",
                vec![],
            ),
        ]
    }

    #[test]
    fn new_commands_of_edits() {
        for (name, previous, current, expected) in edits() {
            assert_eq!(
                new_commands(previous, current),
                expected,
                "case {name:?}: {previous:?} -> {current:?}"
            );
        }
    }

    /// A real edited-comment delivery (taskcluster, CRLF body, `changes.body.from`), with
    /// its `/taskcluster test` line turned into ours.
    #[test]
    fn real_edited_comment_delivery() {
        let delivery: serde_json::Value = serde_json::from_str(include_str!(
            "../tests/fixtures/github/webhook.issue_comment.edited.on-pr.taskcluster.headers+body.json"
        ))
        .unwrap();
        let body = delivery["body"]["comment"]["body"].as_str().unwrap();
        let from = delivery["body"]["changes"]["body"]["from"]
            .as_str()
            .unwrap();
        assert!(body.contains("\r\n"));
        assert_eq!(parse(body), vec![]);
        // The first line is prose, so even our command further down does not run.
        let ours = body.replace("/taskcluster test", "/promptgate run");
        assert_eq!(new_commands(Some(from), &ours), vec![]);
        // Moved to the first line it does, once.
        let first = "/promptgate run --full\r\n\r\ntest PR comment";
        assert_eq!(new_commands(Some(from), first), vec![Ok(run(&[], true))]);
        assert_eq!(new_commands(Some(first), first), vec![]);
    }

    #[test]
    fn help_lists_every_command() {
        let text = help_text(None).unwrap();
        for c in [
            "/promptgate run",
            "/promptgate approve",
            "/promptgate cancel",
            "/promptgate help",
        ] {
            assert!(text.contains(c), "{c} missing from:\n{text}");
        }
        assert!(text.contains("--full"));
        assert!(!text.contains("didn't understand"), "{text}");
    }

    #[test]
    fn help_names_the_error_first() {
        let text = help_text(Some("line 1: unknown command \"aprove\"")).unwrap();
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap();
        assert!(first.contains("unknown command \"aprove\""), "{text}");
        assert!(text.contains("/promptgate approve"));
    }

    #[test]
    fn help_error_cannot_break_the_markdown() {
        let text = help_text(Some("unknown command \"`@acme/team`\"\n# heading")).unwrap();
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap();
        // One line, inside a code span longer than any backtick run in the message.
        assert!(
            first.contains("``unknown command \"`@acme/team`\" # heading``"),
            "{text}"
        );
        assert!(!text.contains("\n# heading"));
    }
}
