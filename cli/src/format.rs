//! Output as docker prints it: tabwriter tables, `--format` Go templates, human sizes and
//! durations, short ids, filters and docker's JSON indentation.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use anyhow::{anyhow, bail, Context, Result};
use gtmpl_value::{FuncError, Value as TValue};
use serde_json::Value;

/// A 12-hex-digit short id, without any `sha256:` prefix.
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(12).collect()
}

/// go-units `HumanSizeWithPrecision(size, 3)`, what docker's tables use for image, container
/// and history sizes: decimal units, 3 significant digits ("5.2MB", "1.98MB", "0B").
pub fn human_size(size: f64) -> String {
    human_size_prec(size, 3)
}

/// go-units `HumanSize` (4 significant digits), used by `system df` and prune totals.
pub fn human_size4(size: f64) -> String {
    human_size_prec(size, 4)
}

fn human_size_prec(size: f64, prec: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let (v, unit) = scale(size, 1000.0, &UNITS);
    format!("{}{unit}", go_g(v, prec))
}

/// go-units `BytesSize`: binary units, 4 significant digits ("7.895MiB").
pub fn bytes_size(size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let (v, unit) = scale(size, 1024.0, &UNITS);
    format!("{}{unit}", go_g(v, 4))
}

fn scale<'a>(mut size: f64, base: f64, units: &[&'a str]) -> (f64, &'a str) {
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    (size, units[i])
}

/// Go's `%.<prec>g`: `prec` significant digits, trailing zeros dropped.
pub fn go_g(v: f64, prec: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let exp = v.abs().log10().floor() as i32;
    // Rounding can carry into a new digit (999.9 -> 1e+03), as Go's %g does.
    let rounded = format!("{:.*e}", prec - 1, v);
    let (mantissa, e) = rounded.split_once('e').unwrap_or((&rounded, "0"));
    let e: i32 = e.parse().unwrap_or(exp);
    if e < -4 || e >= prec as i32 {
        let m = trim_zeros(mantissa);
        return format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    let decimals = (prec as i32 - 1 - e).max(0) as usize;
    trim_zeros(&format!("{v:.decimals$}"))
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// go-units `HumanDuration` ("Less than a second", "3 seconds", "About a minute", "2 hours").
pub fn human_duration(secs: f64) -> String {
    let seconds = secs as i64;
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = (secs / 60.0) as i64;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (secs / 3600.0).round() as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", (secs / 3600.0) as i64 / 24 / 365)
}

/// Seconds since a unix timestamp.
pub fn since_unix(ts: i64) -> f64 {
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    (now - ts as f64).max(0.0)
}

/// "3 minutes ago" for a unix timestamp.
pub fn ago(ts: i64) -> String {
    format!("{} ago", human_duration(since_unix(ts)))
}

/// A unix timestamp as docker's `CreatedAt` ("2024-01-02 03:04:05 +0000 UTC").
pub fn created_at(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
        .unwrap_or_default()
}

/// `--filter key=value` flags as Docker's filters JSON (`{"key":{"value":true}}`).
pub fn filters_json(filters: &[String]) -> Result<Option<String>> {
    if filters.is_empty() {
        return Ok(None);
    }
    let mut map: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for f in filters {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| {
                anyhow!(
                    "invalid argument \"{f}\" for \"-f, --filter\" flag: bad format of filter (expected name=value)"
                )
            })?;
        map.entry(k.trim().to_lowercase())
            .or_default()
            .insert(v.to_string(), true);
    }
    Ok(Some(serde_json::to_string(&map)?))
}

/// Splits a `--format` value into (is_table, template): `table` prefixes and the shorthands
/// `json` (one JSON object per line) and `table` (the default columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// The default table.
    DefaultTable,
    /// A table with this template for its rows (header from the field names).
    Table(String),
    /// A template printed once per object, no header.
    Raw(String),
}

impl Format {
    /// Parses `--format`; `None` or an empty value means the default table.
    pub fn parse(s: Option<&str>) -> Format {
        match s.map(str::trim) {
            None | Some("") | Some("table") => Format::DefaultTable,
            Some("json") => Format::Raw("{{json .}}".into()),
            Some(t) => match t.strip_prefix("table") {
                Some(rest) if rest.starts_with([' ', '\t']) || rest.is_empty() => {
                    Format::Table(rest.trim_start().to_string())
                }
                _ => Format::Raw(s.unwrap_or_default().to_string()),
            },
        }
    }
}

/// A parsed Go template with docker's extra functions (`json`, `join`, `lower`, `upper`,
/// `title`, `split`, `truncate`, `pad`, `println`).
pub struct Template(gtmpl::Template);

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Template")
    }
}

impl Template {
    /// Parses `text` (docker unescapes `\t` and `\n` written literally on the command line).
    pub fn parse(text: &str) -> Result<Template> {
        let text = text.replace("\\t", "\t").replace("\\n", "\n");
        let text = pipe_to_gostr(&text);
        let mut t = gtmpl::Template::default();
        t.add_funcs(&[
            ("json", tf_json as gtmpl::Func),
            ("join", tf_join as gtmpl::Func),
            ("lower", tf_lower as gtmpl::Func),
            ("upper", tf_upper as gtmpl::Func),
            ("title", tf_title as gtmpl::Func),
            ("split", tf_split as gtmpl::Func),
            ("truncate", tf_truncate as gtmpl::Func),
            ("pad", tf_pad as gtmpl::Func),
            ("gostr", tf_gostr as gtmpl::Func),
            ("nonil", tf_nonil as gtmpl::Func),
        ]);
        t.parse(text.as_str())
            .map_err(|e| anyhow!("template parsing error: {e}"))?;
        Ok(Template(t))
    }

    /// Executes the template on a JSON value.
    pub fn render(&self, v: &Value) -> Result<String> {
        self.exec(to_tvalue(v))
    }

    /// Executes the template on JSON text (as the daemon sent it): `json` then writes objects
    /// with their keys in the daemon's order, as docker does with its Go structs.
    pub fn render_raw(&self, raw: &[u8]) -> Result<String> {
        let v: Ordered = serde_json::from_slice(raw).context("decode daemon response")?;
        let t = KEY_ORDER.with(|o| ordered_to_tvalue(v, &mut o.borrow_mut()));
        let out = self.exec(t);
        KEY_ORDER.with(|o| o.borrow_mut().clear());
        out
    }

    fn exec(&self, v: TValue) -> Result<String> {
        let ctx = gtmpl::Context::from(v);
        self.0
            .render(&ctx)
            .map_err(|e| anyhow!("template: {e}"))
            .map(|s| s.replace("<no value>", ""))
    }
}

thread_local! {
    /// The key order of each object of the JSON a template runs on, found by its sorted keys
    /// (template values are hash maps, which forget it); read by the `json` function.
    static KEY_ORDER: std::cell::RefCell<HashMap<Vec<String>, Vec<String>>> =
        std::cell::RefCell::new(HashMap::new());
}

/// JSON with objects kept in document order.
#[derive(Debug)]
enum Ordered {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(String),
    Arr(Vec<Ordered>),
    Obj(Vec<(String, Ordered)>),
}

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OrderedVisitor)
    }
}

struct OrderedVisitor;

impl<'de> serde::de::Visitor<'de> for OrderedVisitor {
    type Value = Ordered;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_unit<E>(self) -> Result<Ordered, E> {
        Ok(Ordered::Null)
    }
    fn visit_none<E>(self) -> Result<Ordered, E> {
        Ok(Ordered::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Ordered, E> {
        Ok(Ordered::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Ordered, E> {
        Ok(Ordered::Num(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Ordered, E> {
        Ok(Ordered::Num(n.into()))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Ordered, E> {
        Ok(serde_json::Number::from_f64(n).map_or(Ordered::Null, Ordered::Num))
    }
    fn visit_str<E>(self, s: &str) -> Result<Ordered, E> {
        Ok(Ordered::Str(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Ordered, E> {
        Ok(Ordered::Str(s))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Ordered, A::Error> {
        let mut v = Vec::new();
        while let Some(e) = seq.next_element()? {
            v.push(e);
        }
        Ok(Ordered::Arr(v))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
        let mut v = Vec::new();
        while let Some((k, e)) = map.next_entry::<String, Ordered>()? {
            v.push((k, e));
        }
        Ok(Ordered::Obj(v))
    }
}

fn ordered_to_tvalue(v: Ordered, order: &mut HashMap<Vec<String>, Vec<String>>) -> TValue {
    match v {
        Ordered::Null => TValue::Nil,
        Ordered::Bool(b) => TValue::Bool(b),
        Ordered::Num(n) => to_tvalue(&Value::Number(n)),
        Ordered::Str(s) => TValue::String(s),
        Ordered::Arr(a) => {
            TValue::Array(a.into_iter().map(|e| ordered_to_tvalue(e, order)).collect())
        }
        Ordered::Obj(o) => {
            let keys: Vec<String> = o.iter().map(|(k, _)| k.clone()).collect();
            let mut sorted = keys.clone();
            sorted.sort();
            order.entry(sorted).or_insert(keys);
            TValue::Map(
                o.into_iter()
                    .map(|(k, e)| (k, ordered_to_tvalue(e, order)))
                    .collect(),
            )
        }
    }
}

/// Writes a template value as JSON, objects in their recorded order (else sorted, as Go
/// writes maps).
fn write_json(v: &TValue, out: &mut String) {
    match v {
        TValue::NoValue | TValue::Nil | TValue::Function(_) => out.push_str("null"),
        TValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        TValue::Number(_) => out.push_str(&from_tvalue(v).to_string()),
        TValue::String(s) => out.push_str(&Value::String(s.clone()).to_string()),
        TValue::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(e, out);
            }
            out.push(']');
        }
        TValue::Object(m) | TValue::Map(m) => {
            let mut keys: Vec<String> = m.keys().cloned().collect();
            keys.sort();
            let keys = KEY_ORDER
                .with(|o| o.borrow().get(&keys).cloned())
                .unwrap_or(keys);
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_json(&m[k], out);
            }
            out.push('}');
        }
    }
}

/// Appends `| gostr` to every action that prints, so values print as Go's `fmt` prints them
/// (`[a b]`, `map[k:v]`, `<nil>`) instead of the template engine's debug form. Control actions
/// (`if`, `range`, `end`, ...), comments and assignments are left alone.
fn pipe_to_gostr(text: &str) -> String {
    const KEYWORDS: [&str; 10] = [
        "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
    ];
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..end];
        let (lead, body) = match inner.strip_prefix('-') {
            Some(b) if b.starts_with(char::is_whitespace) => ("-", b),
            _ => ("", inner),
        };
        let (body, trail) = match body.strip_suffix('-') {
            Some(b) if b.ends_with(char::is_whitespace) => (b, "-"),
            _ => (body, ""),
        };
        let word = body.split_whitespace().next().unwrap_or("");
        let control = KEYWORDS.contains(&word)
            || body.trim_start().starts_with("/*")
            || body.contains(":=")
            || body.split_whitespace().any(|w| w == "=")
            || body.trim().is_empty();
        out.push_str("{{");
        if word == "range" {
            // Go ranges over nil as over nothing; the template engine refuses nil.
            out.push_str(&format!("{lead}{} | nonil {trail}", body.trim_end()));
        } else if control {
            out.push_str(inner);
        } else {
            out.push_str(&format!("{lead}{} | gostr {trail}", body.trim_end()));
        }
        out.push_str("}}");
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A value as Go's `fmt.Print` shows it.
fn go_print(v: &TValue) -> String {
    match v {
        TValue::NoValue => "<no value>".into(),
        TValue::Nil => "<nil>".into(),
        TValue::Bool(b) => b.to_string(),
        TValue::String(s) => s.clone(),
        TValue::Number(n) => n.to_string(),
        TValue::Function(_) => "<func>".into(),
        TValue::Array(a) => format!("[{}]", a.iter().map(go_print).collect::<Vec<_>>().join(" ")),
        TValue::Object(m) | TValue::Map(m) => {
            let mut items: Vec<(&String, &TValue)> = m.iter().collect();
            items.sort_by_key(|(k, _)| k.as_str());
            let parts: Vec<String> = items
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_print(v)))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

fn tf_nonil(args: &[TValue]) -> Result<TValue, FuncError> {
    match args.last() {
        None | Some(TValue::Nil) | Some(TValue::NoValue) => Ok(TValue::Array(Vec::new())),
        Some(v) => Ok(v.clone()),
    }
}

fn tf_gostr(args: &[TValue]) -> Result<TValue, FuncError> {
    match args.last() {
        Some(TValue::String(s)) => Ok(TValue::String(s.clone())),
        Some(v) => Ok(TValue::String(go_print(v))),
        None => Ok(TValue::String(String::new())),
    }
}

/// Converts JSON into the template engine's values.
pub fn to_tvalue(v: &Value) -> TValue {
    match v {
        Value::Null => TValue::Nil,
        Value::Bool(b) => TValue::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                TValue::from(i)
            } else if let Some(u) = n.as_u64() {
                TValue::from(u)
            } else {
                TValue::from(n.as_f64().unwrap_or_default())
            }
        }
        Value::String(s) => TValue::String(s.clone()),
        Value::Array(a) => TValue::Array(a.iter().map(to_tvalue).collect()),
        Value::Object(o) => TValue::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), to_tvalue(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

fn from_tvalue(v: &TValue) -> Value {
    match v {
        TValue::NoValue | TValue::Nil | TValue::Function(_) => Value::Null,
        TValue::Bool(b) => Value::Bool(*b),
        TValue::String(s) => Value::String(s.clone()),
        TValue::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or_default())
            }
        }
        TValue::Array(a) => Value::Array(a.iter().map(from_tvalue).collect()),
        // serde_json's map is sorted, as Go's encoding of a map is.
        TValue::Object(o) | TValue::Map(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), from_tvalue(v))).collect())
        }
    }
}

fn arg_str(args: &[TValue], i: usize, name: &str) -> Result<String, FuncError> {
    match args.get(i) {
        Some(TValue::String(s)) => Ok(s.clone()),
        Some(v) => Ok(v.to_string()),
        None => Err(FuncError::AtLeastXArgs(name.into(), i + 1)),
    }
}

fn tf_json(args: &[TValue]) -> Result<TValue, FuncError> {
    let v = args
        .first()
        .ok_or_else(|| FuncError::ExactlyXArgs("json".into(), 1))?;
    let mut out = String::new();
    write_json(v, &mut out);
    Ok(TValue::String(escape_html(&out)))
}

fn tf_join(args: &[TValue]) -> Result<TValue, FuncError> {
    let sep = arg_str(args, 1, "join")?;
    match args.first() {
        Some(TValue::Array(a)) => Ok(TValue::String(
            a.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(&sep),
        )),
        Some(v) => Ok(TValue::String(v.to_string())),
        None => Err(FuncError::ExactlyXArgs("join".into(), 2)),
    }
}

fn tf_lower(args: &[TValue]) -> Result<TValue, FuncError> {
    Ok(TValue::String(arg_str(args, 0, "lower")?.to_lowercase()))
}

fn tf_upper(args: &[TValue]) -> Result<TValue, FuncError> {
    Ok(TValue::String(arg_str(args, 0, "upper")?.to_uppercase()))
}

fn tf_title(args: &[TValue]) -> Result<TValue, FuncError> {
    let s = arg_str(args, 0, "title")?;
    let mut out = String::new();
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = c.is_whitespace();
    }
    Ok(TValue::String(out))
}

fn tf_split(args: &[TValue]) -> Result<TValue, FuncError> {
    let s = arg_str(args, 0, "split")?;
    let sep = arg_str(args, 1, "split")?;
    Ok(TValue::Array(
        s.split(sep.as_str())
            .map(|p| TValue::String(p.into()))
            .collect(),
    ))
}

fn tf_truncate(args: &[TValue]) -> Result<TValue, FuncError> {
    let s = arg_str(args, 0, "truncate")?;
    let n = match args.get(1) {
        Some(TValue::Number(n)) => n.as_i64().unwrap_or(0).max(0) as usize,
        _ => return Err(FuncError::ExactlyXArgs("truncate".into(), 2)),
    };
    Ok(TValue::String(s.chars().take(n).collect()))
}

fn tf_pad(args: &[TValue]) -> Result<TValue, FuncError> {
    let s = arg_str(args, 0, "pad")?;
    let num = |i: usize| match args.get(i) {
        Some(TValue::Number(n)) => n.as_i64().unwrap_or(0).max(0) as usize,
        _ => 0,
    };
    Ok(TValue::String(format!(
        "{}{s}{}",
        " ".repeat(num(1)),
        " ".repeat(num(2))
    )))
}

fn escape_html(s: &str) -> String {
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// Re-indents raw JSON text with four spaces as docker's `inspect` does, keeping the daemon's
/// key order (docker prints the daemon's bytes through `json.Indent`).
pub fn indent_json(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() * 2);
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    let chars: Vec<char> = raw.chars().collect();
    let mut i = 0;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("    ");
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push(c);
            }
            '{' | '[' => {
                // Empty containers stay on one line: "{}" and "[]".
                let mut j = i + 1;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let close = if c == '{' { '}' } else { ']' };
                if chars.get(j) == Some(&close) {
                    out.push(c);
                    out.push(close);
                    i = j + 1;
                    continue;
                }
                out.push(c);
                depth += 1;
                newline(&mut out, depth);
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// A table written through tabwriter with docker's settings (min width 10, padding 3).
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with this header row.
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|s| s.to_string()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row.
    pub fn render(&self) -> String {
        let lines: Vec<String> = self.rows.iter().map(|r| r.join("\t")).collect();
        tabwrite(&lines)
    }
}

/// Aligns tab-separated lines as Go's `tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)` does: cells
/// are padded to the column's width + 3 (at least 10); the last cell of a line is not padded.
pub fn tabwrite(lines: &[String]) -> String {
    // Go pads to max(text + padding, minwidth); this tabwriter to max(text, minwidth) + padding.
    let mut tw = tabwriter::TabWriter::new(Vec::new())
        .minwidth(10 - 3)
        .padding(3);
    for l in lines {
        let _ = writeln!(tw, "{l}");
    }
    let _ = tw.flush();
    let bytes = tw.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Prints objects (already turned into template contexts) as `--format` asks, or with the
/// default columns (`header` and `row` give the default table).
pub fn print_objects(
    format: &Format,
    objects: &[Value],
    default_header: &[&str],
    default_row: impl Fn(&Value) -> Vec<String>,
    header_names: &[(&str, &str)],
) -> Result<()> {
    let mut out = String::new();
    match format {
        Format::DefaultTable => {
            let mut t = Table::new(default_header);
            for o in objects {
                t.row(default_row(o));
            }
            out = t.render();
        }
        Format::Table(text) => {
            let tmpl = Template::parse(text)?;
            let mut lines = vec![table_header(text, header_names)];
            for o in objects {
                lines.push(tmpl.render(o)?);
            }
            out.push_str(&tabwrite(&lines));
        }
        Format::Raw(text) => {
            let tmpl = Template::parse(text)?;
            for o in objects {
                out.push_str(&tmpl.render(o)?);
                out.push('\n');
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes()).context("write output")?;
    Ok(())
}

/// The header of a `table` format: each `{{.Field}}` replaced by the field's column title.
pub fn table_header(text: &str, names: &[(&str, &str)]) -> String {
    let text = text.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        let action = rest[start + 2..start + end].trim();
        let field = action
            .split_whitespace()
            .find_map(|w| w.strip_prefix('.'))
            .unwrap_or("");
        let field = field.split('.').next().unwrap_or("");
        let title = names
            .iter()
            .find(|(k, _)| *k == field)
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| split_camel(field).to_uppercase());
        out.push_str(&title);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

fn split_camel(s: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if i > 0
            && c.is_uppercase()
            && (chars[i - 1].is_lowercase() || chars.get(i + 1).is_some_and(|n| n.is_lowercase()))
        {
            out.push(' ');
        }
        out.push(*c);
    }
    out
}

/// Parses docker's memory/size strings: `64m`, `1g`, `512k`, `100` (bytes), binary units.
pub fn parse_ram(s: &str) -> Result<i64> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    let num_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(num_end);
    let n: f64 = num.parse().map_err(|_| anyhow!("invalid size: '{s}'"))?;
    let mult: f64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => bail!("invalid size: '{s}'"),
    };
    Ok((n * mult) as i64)
}

/// `--cpus 0.5` as NanoCpus.
pub fn parse_cpus(s: &str) -> Result<i64> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| anyhow!("failed to parse {s} as a rational number"))?;
    if v < 0.0 {
        bail!("invalid value: {s}");
    }
    Ok((v * 1e9).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_match_go_units() {
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(2.0), "2B");
        assert_eq!(human_size(2011.0), "2.01kB");
        assert_eq!(human_size(1_980_000.0), "1.98MB");
        assert_eq!(human_size(5_200_000.0), "5.2MB");
        assert_eq!(human_size(123_456_789.0), "123MB");
        assert_eq!(human_size(1e9), "1GB");
        assert_eq!(human_size4(1_984_000.0), "1.984MB");
        assert_eq!(bytes_size(8_278_016.0), "7.895MiB");
        assert_eq!(bytes_size(64.0 * 1024.0 * 1024.0), "64MiB");
        assert_eq!(bytes_size(1536.0), "1.5KiB");
    }

    #[test]
    fn durations_match_go_units() {
        assert_eq!(human_duration(0.2), "Less than a second");
        assert_eq!(human_duration(1.0), "1 second");
        assert_eq!(human_duration(3.5), "3 seconds");
        assert_eq!(human_duration(61.0), "About a minute");
        assert_eq!(human_duration(150.0), "2 minutes");
        assert_eq!(human_duration(3600.0), "About an hour");
        assert_eq!(human_duration(5.0 * 3600.0), "5 hours");
        assert_eq!(human_duration(3.0 * 86400.0), "3 days");
        assert_eq!(human_duration(20.0 * 86400.0), "2 weeks");
        assert_eq!(human_duration(90.0 * 86400.0), "3 months");
        assert_eq!(human_duration(800.0 * 86400.0), "2 years");
    }

    #[test]
    fn short_ids_drop_the_algorithm() {
        assert_eq!(short_id("sha256:f9ada7ec67299b2ac9c3"), "f9ada7ec6729");
        assert_eq!(short_id("8a19af6c7c68aaaa"), "8a19af6c7c68");
    }

    #[test]
    fn filters_become_docker_json() {
        assert_eq!(filters_json(&[]).unwrap(), None);
        assert_eq!(
            filters_json(&["status=exited".into(), "name=a".into(), "name=b".into()])
                .unwrap()
                .unwrap(),
            r#"{"name":{"a":true,"b":true},"status":{"exited":true}}"#
        );
        assert_eq!(
            filters_json(&["label=a=b".into()]).unwrap().unwrap(),
            r#"{"label":{"a=b":true}}"#
        );
        assert!(filters_json(&["nonsense".into()]).is_err());
    }

    #[test]
    fn templates_render_fields_json_and_functions() {
        let v = json!({"ID": "abc", "Names": "web", "Labels": {"a": "1"}, "N": 3, "L": ["x", "y"]});
        let r = |t: &str| Template::parse(t).unwrap().render(&v).unwrap();
        assert_eq!(r("{{.ID}}"), "abc");
        assert_eq!(r("{{.ID}}\\t{{.Names}}"), "abc\tweb");
        assert_eq!(r("{{json .Labels}}"), r#"{"a":"1"}"#);
        assert_eq!(r("{{upper .Names}}"), "WEB");
        assert_eq!(r("{{join .L \",\"}}"), "x,y");
        assert_eq!(r("{{.N}}"), "3");
        assert_eq!(r("{{.Missing}}"), "");
        assert_eq!(r("{{if eq .Names \"web\"}}yes{{end}}"), "yes");
        assert_eq!(r("{{range .L}}<{{.}}>{{end}}"), "<x><y>");
        assert_eq!(
            r("{{json .}}"),
            r#"{"ID":"abc","L":["x","y"],"Labels":{"a":"1"},"N":3,"Names":"web"}"#
        );
        assert!(Template::parse("{{.ID").is_err());
        let raw = br#"{"Z": 1, "A": {"y": [1, "<b>"], "b": null}}"#;
        assert_eq!(
            Template::parse("{{json .}}")
                .unwrap()
                .render_raw(raw)
                .unwrap(),
            r#"{"Z":1,"A":{"y":[1,"\u003cb\u003e"],"b":null}}"#
        );
        assert_eq!(r("{{.L}}"), "[x y]");
        assert_eq!(r("{{.Labels}}"), "map[a:1]");
        assert_eq!(r("{{- .ID -}} {{ .Names }}"), "abcweb");
        assert_eq!(r("{{$n := .Names}}{{$n}}"), "web");
        assert_eq!(r("{{range $i, $v := .L}}{{$i}}={{$v}} {{end}}"), "0=x 1=y ");
        assert_eq!(r("{{/* note */}}{{.N}}"), "3");
        let nil = Template::parse("{{.X}}")
            .unwrap()
            .render(&json!({"X": null}))
            .unwrap();
        assert_eq!(nil, "<nil>");
        let none = Template::parse("{{range .X}}{{.}}{{end}}|{{range $i, $v := .X}}{{$v}}{{end}}")
            .unwrap()
            .render(&json!({"X": null}))
            .unwrap();
        assert_eq!(none, "|");
    }

    #[test]
    fn formats_split_table_and_raw() {
        assert_eq!(Format::parse(None), Format::DefaultTable);
        assert_eq!(Format::parse(Some("table")), Format::DefaultTable);
        assert_eq!(
            Format::parse(Some("table {{.ID}}")),
            Format::Table("{{.ID}}".into())
        );
        assert_eq!(
            Format::parse(Some("{{.ID}}")),
            Format::Raw("{{.ID}}".into())
        );
        assert_eq!(
            Format::parse(Some("json")),
            Format::Raw("{{json .}}".into())
        );
    }

    #[test]
    fn table_headers_come_from_field_names() {
        let names = [("ID", "CONTAINER ID"), ("Names", "NAMES")];
        assert_eq!(
            table_header("{{.ID}}\\t{{.Names}}\\t{{.RunningFor}}", &names),
            "CONTAINER ID\tNAMES\tRUNNING FOR"
        );
    }

    #[test]
    fn tables_pad_like_go_tabwriter() {
        let mut t = Table::new(&["CONTAINER ID", "IMAGE", "NAMES"]);
        t.row(vec!["abc".into(), "busybox".into(), "x".into()]);
        assert_eq!(
            t.render(),
            "CONTAINER ID   IMAGE     NAMES\nabc            busybox   x\n"
        );
    }

    #[test]
    fn json_is_indented_with_four_spaces_in_daemon_order() {
        let raw = r#"{"b":1,"a":[1,2],"e":{},"l":[],"s":"x,{:}"}"#;
        assert_eq!(
            indent_json(raw),
            "{\n    \"b\": 1,\n    \"a\": [\n        1,\n        2\n    ],\n    \"e\": {},\n    \"l\": [],\n    \"s\": \"x,{:}\"\n}"
        );
    }

    #[test]
    fn sizes_and_cpus_parse_like_docker() {
        assert_eq!(parse_ram("64m").unwrap(), 64 << 20);
        assert_eq!(parse_ram("1g").unwrap(), 1 << 30);
        assert_eq!(parse_ram("512k").unwrap(), 512 << 10);
        assert_eq!(parse_ram("100").unwrap(), 100);
        assert_eq!(parse_ram("1.5GB").unwrap(), 3 << 29);
        assert!(parse_ram("lots").is_err());
        assert_eq!(parse_cpus("0.5").unwrap(), 500_000_000);
        assert_eq!(parse_cpus("2").unwrap(), 2_000_000_000);
        assert!(parse_cpus("x").is_err());
    }

    #[test]
    fn go_g_matches_printf() {
        assert_eq!(go_g(1.98, 3), "1.98");
        assert_eq!(go_g(5.2, 3), "5.2");
        assert_eq!(go_g(123.456, 3), "123");
        assert_eq!(go_g(999.9, 3), "1e+03");
        assert_eq!(go_g(7.89453, 4), "7.895");
    }
}
