//! Variable substitution in Dockerfile words, as moby's shell lexer does it: single quotes
//! are literal, double quotes expand `$VAR` and keep blanks, the escape character quotes
//! the next character, and `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`,
//! `${VAR+word}`, `${VAR:?message}` and `${VAR?message}` expand as in a POSIX shell.

use crate::error::{BuildError, Result};

/// Looks up a variable.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    env: Lookup<'a>,
}

/// Words being built: `split` marks where unquoted blanks separate them.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    cur: String,
    in_word: bool,
}

impl Words {
    fn push(&mut self, c: char) {
        self.cur.push(c);
        self.in_word = true;
    }
    fn push_str(&mut self, s: &str) {
        self.cur.push_str(s);
        self.in_word = true;
    }
    /// An unquoted expansion: blanks in it separate words.
    fn push_split(&mut self, s: &str) {
        for c in s.chars() {
            if c.is_whitespace() {
                self.end();
            } else {
                self.push(c);
            }
        }
    }
    /// Marks a (possibly empty) quoted word as present.
    fn touch(&mut self) {
        self.in_word = true;
    }
    fn end(&mut self) {
        if self.in_word {
            self.words.push(std::mem::take(&mut self.cur));
            self.in_word = false;
        }
    }
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Processes until `stop` (unquoted) or the end. `split` breaks words at blanks.
    fn process(&mut self, stop: Option<char>, split: bool) -> Result<Words> {
        let mut w = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                break;
            }
            self.pos += 1;
            if c == self.escape {
                match self.next() {
                    Some(n) => w.push(n),
                    None => w.push(c),
                }
            } else if c == '\'' {
                w.touch();
                loop {
                    match self.next() {
                        Some('\'') => break,
                        Some(x) => w.push(x),
                        None => return Err(BuildError::Invalid(
                            "unexpected end of statement while looking for matching single-quote"
                                .into(),
                        )),
                    }
                }
            } else if c == '"' {
                w.touch();
                loop {
                    match self.next() {
                        Some('"') => break,
                        Some('$') => {
                            let v = self.dollar()?;
                            w.push_str(&v);
                        }
                        Some(x) if x == self.escape => match self.peek() {
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.pos += 1;
                                w.push(n);
                            }
                            _ => w.push(x),
                        },
                        Some(x) => w.push(x),
                        None => return Err(BuildError::Invalid(
                            "unexpected end of statement while looking for matching double-quote"
                                .into(),
                        )),
                    }
                }
            } else if c == '$' {
                let v = self.dollar()?;
                if split {
                    w.push_split(&v);
                } else {
                    w.push_str(&v);
                }
            } else if split && c.is_whitespace() {
                w.end();
            } else {
                w.push(c);
            }
        }
        Ok(w)
    }

    /// After a `$`: the variable's value (or a literal `$`).
    fn dollar(&mut self) -> Result<String> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                let name = self.name();
                if name.is_empty() {
                    return Err(BuildError::Invalid("missing ':' in substitution".into()));
                }
                let value = (self.env)(&name);
                let c = self.next();
                match c {
                    Some('}') => Ok(value.unwrap_or_default()),
                    Some(':') | Some('-') | Some('+') | Some('?') => {
                        let colon = c == Some(':');
                        let op = if colon { self.next() } else { c };
                        let word = self.process(Some('}'), false)?;
                        let word = word.cur;
                        if self.next() != Some('}') {
                            return Err(BuildError::Invalid(format!(
                                "syntax error: missing '}}' in ${{{name}...}}"
                            )));
                        }
                        let set = value.is_some();
                        let nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
                        let present = if colon { nonempty } else { set };
                        match op {
                            Some('-') => Ok(if present {
                                value.unwrap_or_default()
                            } else {
                                word
                            }),
                            Some('+') => Ok(if present { word } else { String::new() }),
                            Some('?') => {
                                if present {
                                    Ok(value.unwrap_or_default())
                                } else if word.is_empty() {
                                    Err(BuildError::Invalid(format!(
                                        "{name}: is not allowed to be unset"
                                    )))
                                } else {
                                    Err(BuildError::Invalid(format!("{name}: {word}")))
                                }
                            }
                            _ => Err(BuildError::Invalid(format!(
                                "unsupported modifier ({}) in substitution",
                                op.map(String::from).unwrap_or_default()
                            ))),
                        }
                    }
                    _ => Err(BuildError::Invalid(format!(
                        "missing '}}' in substitution of {name}"
                    ))),
                }
            }
            Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
                let name = self.name();
                Ok((self.env)(&name).unwrap_or_default())
            }
            _ => Ok("$".into()),
        }
    }

    fn name(&mut self) -> String {
        let mut n = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                n.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        n
    }
}

/// Expands one word (quotes removed, blanks kept).
pub fn expand_word(word: &str, escape: char, env: Lookup<'_>) -> Result<String> {
    let mut lx = Lexer {
        chars: word.chars().collect(),
        pos: 0,
        escape,
        env,
    };
    Ok(lx.process(None, false)?.cur)
}

/// Expands and splits into words (COPY sources, EXPOSE ports, VOLUME paths).
pub fn expand_words(text: &str, escape: char, env: Lookup<'_>) -> Result<Vec<String>> {
    let mut lx = Lexer {
        chars: text.chars().collect(),
        pos: 0,
        escape,
        env,
    };
    let mut w = lx.process(None, true)?;
    w.end();
    Ok(w.words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "A" => Some("one".into()),
            "E" => Some(String::new()),
            "S" => Some("x y".into()),
            _ => None,
        }
    }

    fn w(s: &str) -> String {
        expand_word(s, '\\', &env).expect("expand")
    }

    #[test]
    fn substitutions() {
        assert_eq!(w("$A/${A}_$B."), "one/one_.");
        assert_eq!(w("${B:-def}|${E:-def}|${E-def}|${B-d}"), "def|def||d");
        assert_eq!(w("${A:+alt}|${E:+alt}|${E+alt}|${B+alt}"), "alt||alt|");
        assert_eq!(w("${B:-${A}x}"), "onex");
        assert!(expand_word("${B:?need B}", '\\', &env).is_err());
        assert_eq!(w("cost $"), "cost $");
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w("'$A' \"$A\" \\$A"), "$A one $A");
        assert_eq!(w("\"a\\\"b\""), "a\"b");
        assert_eq!(expand_word("x`$A", '`', &env).expect("x"), "x$A");
    }

    #[test]
    fn words() {
        let v = expand_words("a \"b c\" $S '' d", '\\', &env).expect("words");
        assert_eq!(v, vec!["a", "b c", "x", "y", "", "d"]);
    }
}
