//! Container ids and names: generation and Docker's name rules.

/// A new random container id (64 hex).
pub fn new_id() -> String {
    let mut buf = [0u8; 32];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| {
        use std::io::Read;
        f.read_exact(&mut buf)
    });
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Docker's name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let n = name.strip_prefix('/').unwrap_or(name);
    let mut chars = n.chars();
    n.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// A generated name in Docker's adjective_surname style.
pub fn random_name(id: &str) -> String {
    const LEFT: &[&str] = &[
        "brave", "calm", "eager", "fervent", "gifted", "happy", "jolly", "keen", "lucid", "merry",
        "nifty", "quirky", "serene", "sharp", "tender", "vivid",
    ];
    const RIGHT: &[&str] = &[
        "babbage", "curie", "darwin", "euler", "fermat", "gauss", "hopper", "kepler", "lovelace",
        "noether", "pascal", "ritchie", "shannon", "thompson", "turing", "wozniak",
    ];
    let b = u8::from_str_radix(&id[..2], 16).unwrap_or(0) as usize;
    let c = u8::from_str_radix(&id[2..4], 16).unwrap_or(0) as usize;
    format!("{}_{}", LEFT[b % LEFT.len()], RIGHT[c % RIGHT.len()])
}
