//! `.dockerignore` patterns, as docker's patternmatcher reads them: one pattern per line,
//! `#` comments, `!` exceptions, the last matching pattern wins, a pattern matching a
//! directory excludes what is under it, and `**` matches any number of directories.

/// The patterns of a `.dockerignore` file: blank lines and comments dropped, each pattern
/// cleaned as a relative path (`./a/../b/` is `b`).
pub fn read_patterns(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (neg, p) = match l.strip_prefix('!') {
                Some(r) => ("!", r.trim()),
                None => ("", l),
            };
            let cleaned = clean(p);
            (!cleaned.is_empty()).then(|| format!("{neg}{cleaned}"))
        })
        .collect()
}

/// A relative, `/`-separated path without `.`, `..` above the root, or a leading `/`.
pub fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// Whether `path` (relative, `/`-separated) is excluded by `.dockerignore` patterns: the last
/// matching pattern wins, `!` re-includes, and a pattern matching a directory excludes what
/// is under it.
pub fn ignored(patterns: &[String], path: &str) -> bool {
    let mut excluded = false;
    for p in patterns {
        let (negate, pat) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p.as_str()),
        };
        let pat = pat.trim_start_matches("./").trim_start_matches('/');
        let pat = pat.trim_end_matches('/');
        if pat.is_empty() {
            continue;
        }
        // The path or one of its parent directories matches.
        let mut matched = false;
        let mut prefix = String::new();
        for (i, part) in path.split('/').enumerate() {
            if i > 0 {
                prefix.push('/');
            }
            prefix.push_str(part);
            if glob(pat, &prefix) {
                matched = true;
                break;
            }
        }
        if matched {
            excluded = !negate;
        }
    }
    excluded
}

/// Go's `filepath.Match` with docker's `**` (any number of directories).
pub fn glob(pat: &str, name: &str) -> bool {
    fn rec(p: &[u8], n: &[u8]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => {
                let rest = if p.get(2) == Some(&b'/') {
                    &p[3..]
                } else {
                    &p[2..]
                };
                (0..=n.len())
                    .any(|i| (i == 0 || n[i - 1] == b'/' || rest.is_empty()) && rec(rest, &n[i..]))
                    || rec(rest, n)
            }
            Some(b'*') => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != b'/')
                .any(|i| rec(&p[1..], &n[i..])),
            Some(b'?') => !n.is_empty() && n[0] != b'/' && rec(&p[1..], &n[1..]),
            Some(b'[') => {
                let Some(end) = p.iter().position(|&c| c == b']') else {
                    return false;
                };
                let Some(&c) = n.first() else { return false };
                let class = &p[1..end];
                let (neg, class) = match class.first() {
                    Some(b'^') | Some(b'!') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == b'-' {
                        hit |= class[i] <= c && c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit != neg && rec(&p[end + 1..], &n[1..])
            }
            Some(b'\\') if p.len() > 1 => n.first() == Some(&p[1]) && rec(&p[2..], &n[1..]),
            Some(&c) => n.first() == Some(&c) && rec(&p[1..], &n[1..]),
        }
    }
    rec(pat.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_exceptions() {
        let pats = read_patterns(
            "# comment\n*.log\n!keep.log\nbuild\n!build/keep.txt\n**/*.tmp\n./docs/?.md\n\n",
        );
        assert!(ignored(&pats, "a.log"));
        assert!(!ignored(&pats, "keep.log"));
        assert!(!ignored(&pats, "dir/a.log"));
        assert!(ignored(&pats, "build/x.o"));
        assert!(!ignored(&pats, "build/keep.txt"));
        assert!(ignored(&pats, "deep/er/x.tmp"));
        assert!(ignored(&pats, "x.tmp"));
        assert!(ignored(&pats, "docs/a.md"));
        assert!(!ignored(&pats, "docs/ab.md"));
        assert!(!ignored(&pats, "src/main.rs"));
        assert!(glob("[a-c]x", "bx") && !glob("[!a-c]x", "bx"));
        assert_eq!(clean("./a/../b/"), "b");
    }
}
