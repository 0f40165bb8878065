//! A small RFC 4180 reader for `.csv` datasets: comma-separated fields, records ended by
//! LF or CRLF, and double-quoted fields that may hold commas, newlines and doubled
//! quotes. Hand-written because a dataset needs nothing more and the project carries no
//! CSV crate.

/// One record: the 1-based line it starts on and its fields.
#[derive(Debug, PartialEq)]
pub struct Record {
    pub line: usize,
    pub fields: Vec<String>,
}

/// A malformed record: the line where the problem is, and what it is.
#[derive(Debug, PartialEq)]
pub struct CsvError {
    pub line: usize,
    pub message: String,
}

/// Every record of `text`, in order. Blank lines between records are skipped (a data
/// file often ends with several); a leading byte-order mark is ignored.
pub fn records(text: &str) -> Result<Vec<Record>, CsvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted_at: Option<usize> = None;
        // Set after a closing quote: only a separator or the record's end may follow.
        let mut closed = false;
        while let Some(c) = chars.next() {
            if quoted_at.is_some() && !closed {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => closed = true,
                    '\n' => {
                        line += 1;
                        field.push('\n');
                    }
                    other => field.push(other),
                }
                continue;
            }
            match c {
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    (quoted_at, closed) = (None, false);
                }
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' => {
                    line += 1;
                    break;
                }
                '"' if field.is_empty() && !closed => quoted_at = Some(line),
                _ if closed => {
                    return Err(CsvError {
                        line,
                        message: format!(
                            "`{c}` after a closing quote; a quoted field ends at a comma or the end of the line (write a quote inside one as \"\")"
                        ),
                    })
                }
                '"' => {
                    return Err(CsvError {
                        line,
                        message: "a quote inside an unquoted field; quote the whole field and double the quote (\"a \"\"b\"\" c\")".into(),
                    })
                }
                other => field.push(other),
            }
        }
        if let (Some(opened), false) = (quoted_at, closed) {
            return Err(CsvError {
                line: opened,
                message: "a quoted field is not closed".into(),
            });
        }
        fields.push(field);
        let blank = fields.len() == 1 && fields[0].is_empty() && quoted_at.is_none();
        if !blank {
            out.push(Record {
                line: start,
                fields,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<Vec<String>> {
        records(text)
            .unwrap()
            .into_iter()
            .map(|r| r.fields)
            .collect()
    }

    #[test]
    fn reads_plain_and_quoted_fields() {
        let text = "id,question\r\na,\"Hello, \"\"world\"\"\"\n\nb,\"two\nlines\"\nc,\n";
        let got = records(text).unwrap();
        assert_eq!(
            got.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![1, 2, 4, 6]
        );
        assert_eq!(
            fields(text),
            vec![
                vec!["id", "question"],
                vec!["a", "Hello, \"world\""],
                vec!["b", "two\nlines"],
                vec!["c", ""],
            ]
        );
    }

    #[test]
    fn a_last_record_without_newline_and_a_bom() {
        assert_eq!(
            fields("\u{feff}x,y\n1,2"),
            vec![vec!["x", "y"], vec!["1", "2"]]
        );
        assert_eq!(fields("\"\"\n"), vec![vec![""]]);
    }

    #[test]
    fn malformed_quotes_name_their_line() {
        let err = records("id,q\na,\"open\nb,c\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("not closed"), "{err:?}");
        let err = records("id,q\na,b\"c\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("inside an unquoted field"), "{err:?}");
        let err = records("id,q\n\n\na,\"b\"c\n").unwrap_err();
        assert_eq!(err.line, 4);
        assert!(err.message.contains("after a closing quote"), "{err:?}");
    }
}
