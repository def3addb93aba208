//! Signal names and numbers as runc's `kill` accepts them.

use nix::sys::signal::Signal;

/// Parse `KILL`, `SIGKILL`, `kill` or `9` the way runc does: a number is taken as is,
/// otherwise the name is upper-cased and `SIG` prefixed when missing.
pub fn parse_signal(raw: &str) -> Result<Signal, String> {
    let raw = raw.trim();
    if let Ok(n) = raw.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("unknown signal {raw:?}"));
    }
    let upper = raw.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    // nix knows SIGIOT/SIGPOLL only under their other names.
    let name = match name.as_str() {
        "SIGIOT" => "SIGABRT".to_string(),
        "SIGPOLL" => "SIGIO".to_string(),
        "SIGCLD" => "SIGCHLD".to_string(),
        _ => name,
    };
    name.parse::<Signal>()
        .map_err(|_| format!("unknown signal {raw:?}"))
}

/// Shell-style exit code of a process killed by `signal`.
pub fn signal_exit_code(signal: Signal) -> u8 {
    (128 + signal as i32).clamp(0, 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_prefixes() {
        assert_eq!(parse_signal("KILL"), Ok(Signal::SIGKILL));
        assert_eq!(parse_signal("SIGKILL"), Ok(Signal::SIGKILL));
        assert_eq!(parse_signal("kill"), Ok(Signal::SIGKILL));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert_eq!(parse_signal("15"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("5"), Ok(Signal::SIGTRAP));
        assert_eq!(parse_signal("7"), Ok(Signal::SIGBUS));
        assert_eq!(parse_signal("SIGUSR1"), Ok(Signal::SIGUSR1));
        assert_eq!(parse_signal("iot"), Ok(Signal::SIGABRT));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn exit_code_is_128_plus_signal() {
        assert_eq!(signal_exit_code(Signal::SIGKILL), 137);
        assert_eq!(signal_exit_code(Signal::SIGTERM), 143);
    }
}
