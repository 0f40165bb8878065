//! The word-level diff of a case's base and head outputs on the run page, computed on
//! the server so the page shows it without a script. A longest common subsequence over
//! word and whitespace tokens; the common prefix and suffix are cut first, and a middle
//! too large for the table is shown as one deletion and one insertion, so a long output
//! costs bounded time and memory.

use serde::Serialize;

/// Largest LCS table computed, in cells (2 bytes each): 2 MB, a few milliseconds.
const MAX_CELLS: usize = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// In both outputs.
    Same,
    /// Only in base.
    Del,
    /// Only in head.
    Ins,
}

/// A run of tokens with one [`Op`]; the pieces in order spell both outputs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Piece {
    pub op: Op,
    pub text: String,
}

/// Maximal runs of whitespace and of non-whitespace, so the pieces rebuild the text.
fn tokens(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut space = None;
    for (i, c) in s.char_indices() {
        let is_space = c.is_whitespace();
        if space.is_some_and(|sp| sp != is_space) {
            out.push(&s[start..i]);
            start = i;
        }
        space = Some(is_space);
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// The word diff of `base` → `head`.
pub fn diff(base: &str, head: &str) -> Vec<Piece> {
    let a = tokens(base);
    let b = tokens(head);
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops: Vec<(Op, &str)> = a[..prefix].iter().map(|t| (Op::Same, *t)).collect();
    if am.len().saturating_mul(bm.len()) <= MAX_CELLS {
        lcs(am, bm, &mut ops);
    } else {
        ops.extend(am.iter().map(|t| (Op::Del, *t)));
        ops.extend(bm.iter().map(|t| (Op::Ins, *t)));
    }
    ops.extend(a[a.len() - suffix..].iter().map(|t| (Op::Same, *t)));
    let mut pieces: Vec<Piece> = Vec::new();
    for (op, text) in ops {
        match pieces.last_mut() {
            Some(last) if last.op == op => last.text.push_str(text),
            _ => pieces.push(Piece {
                op,
                text: text.to_string(),
            }),
        }
    }
    pieces
}

/// Appends the edit script of `a` → `b`. `len[i][j]` is the LCS length of `a[i..]` and
/// `b[j..]`; it fits `u16` because it is at most `min(n, m)`, ≤ 1,000 under the cap.
fn lcs<'a>(a: &[&'a str], b: &[&'a str], ops: &mut Vec<(Op, &'a str)>) {
    let (n, m) = (a.len(), b.len());
    let w = m + 1;
    let mut len = vec![0u16; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            len[i * w + j] = if a[i] == b[j] {
                len[(i + 1) * w + j + 1] + 1
            } else {
                len[(i + 1) * w + j].max(len[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if a[i] == b[j] {
            ops.push((Op::Same, a[i]));
            i += 1;
            j += 1;
        } else if len[(i + 1) * w + j] >= len[i * w + j + 1] {
            ops.push((Op::Del, a[i]));
            i += 1;
        } else {
            ops.push((Op::Ins, b[j]));
            j += 1;
        }
    }
    ops.extend(a[i..].iter().map(|t| (Op::Del, *t)));
    ops.extend(b[j..].iter().map(|t| (Op::Ins, *t)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(pieces: &[Piece], skip: Op) -> String {
        pieces
            .iter()
            .filter(|p| p.op != skip)
            .map(|p| p.text.as_str())
            .collect()
    }

    #[test]
    fn changed_words_are_marked_and_both_sides_rebuild() {
        let base = "Explain invoice 1 to  the customer.";
        let head = "Explain the bill 1 to  the customer, please.";
        let d = diff(base, head);
        assert_eq!(side(&d, Op::Ins), base);
        assert_eq!(side(&d, Op::Del), head);
        let del: Vec<&str> = d
            .iter()
            .filter(|p| p.op == Op::Del)
            .map(|p| p.text.as_str())
            .collect();
        assert_eq!(del, ["invoice", "customer."]);
        assert!(d.iter().any(|p| p.op == Op::Ins && p.text.contains("bill")));
        assert_eq!(
            diff("same", "same"),
            [Piece {
                op: Op::Same,
                text: "same".into()
            }]
        );
        assert!(diff("", "").is_empty());
    }

    #[test]
    fn a_middle_over_the_cap_is_one_deletion_and_one_insertion() {
        let base: String = (0..1500).map(|i| format!("a{i} ")).collect();
        let head: String = (0..1500).map(|i| format!("b{i} ")).collect();
        let d = diff(&format!("start {base}end"), &format!("start {head}end"));
        let ops: Vec<Op> = d.iter().map(|p| p.op).collect();
        assert_eq!(ops, [Op::Same, Op::Del, Op::Ins, Op::Same]);
    }
}
