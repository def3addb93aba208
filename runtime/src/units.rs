//! Size strings as runc's `update` takes them (`512m`, `1g`, `-1`).

/// Parse a byte size: a plain integer, `-1` for unlimited, or a number with a
/// binary suffix k/m/g/t/p (optionally followed by `b`/`ib`), case-insensitive, like
/// docker/go-units' `RAMInBytes`.
pub fn parse_ram_bytes(raw: &str) -> Result<i64, String> {
    let s = raw.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let lower = s.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("invalid size {raw:?}"))?;
    let (num, suffix) = lower.split_at(split);
    let num: f64 = num.parse().map_err(|_| format!("invalid size {raw:?}"))?;
    let suffix = suffix.trim();
    let suffix = suffix
        .strip_suffix("ib")
        .or_else(|| suffix.strip_suffix('b'))
        .unwrap_or(suffix);
    let mult: f64 = match suffix {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0_f64.powi(4),
        "p" => 1024.0_f64.powi(5),
        _ => return Err(format!("invalid size {raw:?}")),
    };
    Ok((num * mult) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_ram_bytes("1048576"), Ok(1048576));
        assert_eq!(parse_ram_bytes("-1"), Ok(-1));
        assert_eq!(parse_ram_bytes("512m"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_ram_bytes("1G"), Ok(1024 * 1024 * 1024));
        assert_eq!(parse_ram_bytes("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_ram_bytes("1.5k"), Ok(1536));
        assert!(parse_ram_bytes("lots").is_err());
        assert!(parse_ram_bytes("5x").is_err());
    }
}
