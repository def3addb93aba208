//! Validation of ids and namespace names: `[A-Za-z0-9][A-Za-z0-9_.-]{0,127}`.

use crate::error::{Error, Result};

/// Longest id accepted (1 leading character plus 127 more).
pub const MAX_ID_LEN: usize = 128;

/// Whether `id` matches `[A-Za-z0-9][A-Za-z0-9_.-]{0,127}`.
///
/// The same rule holds for namespaces, container ids and exec ids, so every one of them is safe
/// as a single path component (no `/`, never `.` or `..`) and as a runtime container id.
pub fn is_valid(id: &str) -> bool {
    let bytes = id.as_bytes();
    match bytes.first() {
        Some(first) if first.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    bytes.len() <= MAX_ID_LEN
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Fails with [`Error::InvalidId`] unless `id` is valid; `what` names the field.
pub fn validate(what: &'static str, id: &str) -> Result<()> {
    if is_valid(id) {
        Ok(())
    } else {
        Err(Error::InvalidId {
            what,
            id: id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn accepts_valid_ids() {
        for id in ["a", "A1", "0", "web-1", "x.y_z", "a-", &"a".repeat(128)] {
            assert!(is_valid(id), "{id}");
        }
    }

    #[test]
    fn rejects_invalid_ids() {
        for id in [
            "",
            "-a",
            ".a",
            "_a",
            "..",
            "a/b",
            "a b",
            "é",
            "a:b",
            &"a".repeat(129),
            "a\n",
        ] {
            assert!(!is_valid(id), "{id:?}");
        }
    }

    #[test]
    fn validate_names_the_field() {
        let err = validate("container id", "../x").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(
            err.to_string().contains("invalid container id \"../x\""),
            "{err}"
        );
    }
}
