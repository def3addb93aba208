//! Dockerfile parsing: parser directives (`escape`, `syntax`), comments, line continuations,
//! heredocs, builder flags and the JSON and shell forms of arguments.
//!
//! The parser follows moby's (BuildKit's `frontend/dockerfile/parser`): a continued line is
//! joined to the next one with its escape character and trailing blanks removed, comment
//! lines and empty lines inside a continuation are dropped, and the joined text is what
//! `Step N/M : ...` prints.

use crate::error::{BuildError, Result};

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character (`\` unless `# escape=` says otherwise).
    pub escape: char,
    /// The `# syntax=` directive, when given (recorded; berth has one frontend).
    pub syntax: Option<String>,
    pub instructions: Vec<Instruction>,
}

/// One instruction as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The keyword in capitals (`RUN`).
    pub keyword: String,
    /// The line it starts on (1-based).
    pub line: usize,
    /// The whole logical line, continuations joined, as the build output shows it.
    pub original: String,
    /// Builder flags (`--from=build`) without their leading dashes.
    pub flags: Vec<String>,
    /// The text after the keyword and the flags.
    pub rest: String,
    /// Here-documents read after the line (`RUN <<EOF`), in order.
    pub heredocs: Vec<Heredoc>,
}

/// A here-document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    /// The body, each line ending with a newline.
    pub content: String,
    /// Whether variables are expanded in the body (an unquoted delimiter).
    pub expand: bool,
}

/// The instructions a Dockerfile may hold.
pub const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn parse_error(line: usize, msg: impl std::fmt::Display) -> BuildError {
    BuildError::Parse(format!("dockerfile parse error line {line}: {msg}"))
}

/// A parser directive line (`# key=value`), lowercased key.
fn directive(line: &str) -> Option<(String, String)> {
    let body = line.trim().strip_prefix('#')?.trim();
    let (k, v) = body.split_once('=')?;
    let k = k.trim();
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some((k.to_ascii_lowercase(), v.trim().to_string()))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a trailing escape character (and the blanks after it); true when the line ends
/// the instruction.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    match t.strip_suffix(escape) {
        Some(rest) => (rest, false),
        None => (line, true),
    }
}

/// Parses Dockerfile text.
pub fn parse(text: &str) -> Result<Dockerfile> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut escape = '\\';
    let mut syntax = None;
    let mut i = 0;
    let mut seen_escape = false;
    // Directives: a block of `# key=value` lines at the very top.
    while i < lines.len() {
        let Some((k, v)) = directive(lines[i]) else {
            break;
        };
        match k.as_str() {
            "escape" => {
                if seen_escape {
                    return Err(parse_error(
                        i + 1,
                        "only one escape parser directive can be used",
                    ));
                }
                escape = match v.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(parse_error(
                            i + 1,
                            format!("invalid escape token '{v}' does not match ^[\\\\`]$"),
                        ))
                    }
                };
                seen_escape = true;
            }
            "syntax" => syntax = Some(v),
            _ => {}
        }
        i += 1;
    }
    let mut instructions = Vec::new();
    while i < lines.len() {
        let raw = lines[i];
        i += 1;
        let start = i;
        if is_comment(raw) || raw.trim().is_empty() {
            continue;
        }
        let (first, mut ended) = trim_continuation(raw.trim_start(), escape);
        let mut logical = first.to_string();
        while !ended && i < lines.len() {
            let next = lines[i];
            i += 1;
            if is_comment(next) || next.trim().is_empty() {
                continue;
            }
            let (part, e) = trim_continuation(next, escape);
            logical.push_str(part);
            ended = e;
        }
        if logical.trim().is_empty() {
            continue;
        }
        let mut ins = split_instruction(&logical, start, escape)?;
        if matches!(ins.keyword.as_str(), "RUN" | "COPY" | "ADD") {
            for (name, strip, expand) in heredoc_markers(&ins.rest) {
                let mut content = String::new();
                let mut closed = false;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    let l = if strip { l.trim_start_matches('\t') } else { l };
                    if l == name {
                        closed = true;
                        break;
                    }
                    content.push_str(l);
                    content.push('\n');
                }
                if !closed {
                    return Err(parse_error(start, format!("unterminated heredoc {name}")));
                }
                ins.heredocs.push(Heredoc {
                    name,
                    content,
                    expand,
                });
            }
        }
        instructions.push(ins);
    }
    Ok(Dockerfile {
        escape,
        syntax,
        instructions,
    })
}

/// Splits a logical line into keyword, flags and the rest, and checks the keyword.
fn split_instruction(line: &str, number: usize, escape: char) -> Result<Instruction> {
    let trimmed = line.trim();
    let (word, rest) = trimmed
        .split_once(char::is_whitespace)
        .map(|(w, r)| (w, r.trim_start()))
        .unwrap_or((trimmed, ""));
    let keyword = word.to_ascii_uppercase();
    if !KEYWORDS.contains(&keyword.as_str()) {
        return Err(parse_error(
            number,
            format!("unknown instruction: {keyword}"),
        ));
    }
    let (flags, rest) = if keyword == "ONBUILD" {
        (Vec::new(), rest.to_string())
    } else {
        extract_flags(rest, escape)
    };
    Ok(Instruction {
        keyword,
        line: number,
        original: trimmed.to_string(),
        flags,
        rest,
        heredocs: Vec::new(),
    })
}

/// Leading `--name[=value]` words (a bare `--` ends them), as moby's `extractBuilderFlags`.
fn extract_flags(rest: &str, escape: char) -> (Vec<String>, String) {
    let mut flags = Vec::new();
    let mut s = rest.trim_start();
    while let Some(body) = s.strip_prefix("--") {
        // One word, quotes kept together.
        let mut end = body.len();
        let mut quote: Option<char> = None;
        let mut prev_escape = false;
        for (idx, c) in body.char_indices() {
            if prev_escape {
                prev_escape = false;
                continue;
            }
            if c == escape && quote != Some('\'') {
                prev_escape = true;
                continue;
            }
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c.is_whitespace() => {
                    end = idx;
                    break;
                }
                None => {}
            }
        }
        let word = &body[..end];
        s = body[end..].trim_start();
        if word.is_empty() {
            break;
        }
        flags.push(unquote(word));
    }
    (flags, s.to_string())
}

/// Removes one level of matching quotes inside a flag (`--chown="a:b"`).
fn unquote(word: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    for c in word.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => out.push(c),
            None if c == '"' || c == '\'' => quote = Some(c),
            None => out.push(c),
        }
    }
    out
}

/// The heredoc markers on a line: `<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'` (name, strip tabs,
/// expand).
fn heredoc_markers(rest: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    let b = rest.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i + 1 < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == b'"' || c == b'\'' {
            quote = Some(c);
            i += 1;
            continue;
        }
        if c == b'<'
            && b[i + 1] == b'<'
            && b.get(i + 2) != Some(&b'<')
            && (i == 0 || b[i - 1] != b'<')
        {
            let mut j = i + 2;
            let strip = b.get(j) == Some(&b'-');
            if strip {
                j += 1;
            }
            let (expand, name) = match b.get(j) {
                Some(&q @ (b'"' | b'\'')) => {
                    let close = b[j + 1..].iter().position(|&x| x == q).map(|p| p + j + 1);
                    match close {
                        Some(e) => {
                            let n = String::from_utf8_lossy(&b[j + 1..e]).into_owned();
                            j = e + 1;
                            (false, n)
                        }
                        None => (true, String::new()),
                    }
                }
                _ => {
                    let s = j;
                    while j < b.len()
                        && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'-')
                    {
                        j += 1;
                    }
                    (true, String::from_utf8_lossy(&b[s..j]).into_owned())
                }
            };
            if !name.is_empty() {
                out.push((name, strip, expand));
            }
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// The JSON form of arguments (`["a", "b"]`), when `rest` is one.
pub fn json_args(rest: &str) -> Option<Vec<String>> {
    let t = rest.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

/// The ENV and LABEL forms: `k=v k2="v 2"` pairs (quotes kept for the expansion to remove),
/// or the legacy `key value with spaces`.
pub fn name_values(
    keyword: &str,
    rest: &str,
    escape: char,
    line: usize,
) -> Result<Vec<(String, String)>> {
    let words = split_words(rest, escape);
    if words.is_empty() {
        return Err(parse_error(
            line,
            format!("{keyword} requires at least one argument"),
        ));
    }
    if !words[0].contains('=') {
        // Legacy form: the first word is the name, the rest of the line its value.
        let name = words[0].clone();
        let value = rest.trim()[name.len()..].trim().to_string();
        if value.is_empty() && keyword != "ARG" {
            return Err(parse_error(
                line,
                format!("{keyword} must have two arguments"),
            ));
        }
        return Ok(vec![(name, value)]);
    }
    let mut out = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(parse_error(
                line,
                format!("{keyword} names can not be blank"),
            ));
        };
        if k.is_empty() {
            return Err(parse_error(
                line,
                format!("{keyword} names can not be blank"),
            ));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Splits on blanks outside quotes, keeping quotes and escapes (for the expander).
pub fn split_words(s: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars().peekable();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        if c == escape && quote != Some('\'') {
            cur.push(c);
            if let Some(n) = chars.next() {
                cur.push(n);
            }
            in_word = true;
            continue;
        }
        match quote {
            Some(q) if c == q => {
                quote = None;
                cur.push(c);
            }
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                cur.push(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_comments_and_original() {
        let df = parse(
            "# syntax=docker/dockerfile:1\nFROM busybox AS base\n# a comment\nRUN echo a \\\n  # inside\n\n  b\nenv A=1\n",
        )
        .expect("parse");
        assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(df.instructions.len(), 3);
        assert_eq!(df.instructions[1].keyword, "RUN");
        assert_eq!(df.instructions[1].original, "RUN echo a   b");
        assert_eq!(df.instructions[1].line, 4);
        assert_eq!(df.instructions[2].keyword, "ENV");
        assert_eq!(df.instructions[2].line, 8);
    }

    #[test]
    fn escape_directive() {
        let df = parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo\n").expect("parse");
        assert_eq!(df.escape, '`');
        assert_eq!(df.instructions[1].rest, "dir c:\\   && echo");
        assert!(parse("# escape=x\nFROM a\n").is_err());
    }

    #[test]
    fn flags_and_json() {
        let df =
            parse("FROM a\nCOPY --from=build --chown=\"1:2\" [\"a b\", \"/c\"]\n").expect("parse");
        let c = &df.instructions[1];
        assert_eq!(c.flags, vec!["from=build", "chown=1:2"]);
        assert_eq!(json_args(&c.rest), Some(vec!["a b".into(), "/c".into()]));
        assert_eq!(json_args("echo [x]"), None);
    }

    #[test]
    fn unknown_instruction_has_its_line() {
        let e = parse("FROM a\n\nFOO bar\n").expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "dockerfile parse error line 3: unknown instruction: FOO"
        );
    }

    #[test]
    fn heredocs() {
        let df = parse("FROM a\nRUN <<EOF\necho 1\necho 2\nEOF\nCOPY <<-'X' <<Y /d/\n\tone $A\n\tX\ntwo\nY\nCMD x\n")
            .expect("parse");
        assert_eq!(df.instructions.len(), 4);
        let run = &df.instructions[1];
        assert_eq!(run.heredocs[0].content, "echo 1\necho 2\n");
        let copy = &df.instructions[2];
        assert_eq!(copy.heredocs[0].name, "X");
        assert!(!copy.heredocs[0].expand);
        assert_eq!(copy.heredocs[0].content, "one $A\n");
        assert_eq!(copy.heredocs[1].content, "two\n");
        assert!(parse("FROM a\nRUN <<EOF\nno end\n").is_err());
    }

    #[test]
    fn env_forms() {
        let kv = name_values("ENV", "A=1 B=\"two words\" C=x\\ y", '\\', 1).expect("kv");
        assert_eq!(
            kv,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "\"two words\"".into()),
                ("C".into(), "x\\ y".into())
            ]
        );
        let legacy = name_values("ENV", "PATH /a b", '\\', 1).expect("legacy");
        assert_eq!(legacy, vec![("PATH".into(), "/a b".into())]);
        assert!(name_values("ENV", "", '\\', 2).is_err());
    }
}
