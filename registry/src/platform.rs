//! Platforms (`linux/amd64`, `linux/arm64/v8`) and picking one from an index.

use std::fmt;

use crate::error::{Error, Result};

/// An OS/architecture/variant triple, in OCI's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, `riscv64`.
    pub architecture: String,
    /// `v8`, `v7`, ... (empty when not given).
    pub variant: String,
}

impl Platform {
    /// The host's platform (`linux/amd64` on x86_64).
    pub fn host() -> Platform {
        let (architecture, variant) = normalize_arch(std::env::consts::ARCH, "");
        Platform {
            os: "linux".into(),
            architecture,
            variant,
        }
    }

    /// Parses `--platform` (`os[/arch[/variant]]`); empty means the host's.
    pub fn parse(s: &str) -> Result<Platform> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Platform::host());
        }
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(Error::InvalidArgument(format!(
                "\"{s}\": unknown operating system or architecture: invalid argument"
            )));
        }
        let os = parts[0].to_lowercase();
        let (architecture, variant) = match parts.len() {
            1 => (Platform::host().architecture, String::new()),
            2 => normalize_arch(&parts[1].to_lowercase(), ""),
            _ => normalize_arch(&parts[1].to_lowercase(), &parts[2].to_lowercase()),
        };
        Ok(Platform {
            os,
            architecture,
            variant,
        })
    }

    /// Whether an index entry's platform is this one (a missing variant matches any, and
    /// arm64's variant defaults to v8, as containerd's matcher does).
    pub fn matches(&self, os: &str, architecture: &str, variant: &str) -> bool {
        let (arch, var) = normalize_arch(architecture, variant);
        os == self.os
            && arch == self.architecture
            && (self.variant.is_empty() || var.is_empty() || var == self.variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let (a, v) = match (arch, variant) {
        ("x86_64" | "x86-64" | "amd64", _) => ("amd64", ""),
        ("aarch64" | "arm64", "8" | "v8" | "") => ("arm64", ""),
        ("aarch64" | "arm64", v) => ("arm64", v),
        ("armhf", _) => ("arm", "v7"),
        ("armel", _) => ("arm", "v6"),
        ("arm", "" | "7" | "v7") => ("arm", "v7"),
        ("arm", v) => ("arm", v),
        ("i386" | "i686" | "x86", _) => ("386", ""),
        (a, v) => (a, v),
    };
    let v = v.trim_start_matches('v');
    let v = if v.is_empty() {
        String::new()
    } else {
        format!("v{v}")
    };
    (a.to_string(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_platforms() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64");
        assert!(p.matches("linux", "arm64", "v8"));
        assert!(p.matches("linux", "arm64", ""));
        assert!(!p.matches("linux", "amd64", ""));
        let p = Platform::parse("linux/arm/v6").unwrap();
        assert!(p.matches("linux", "arm", "v6"));
        assert!(!p.matches("linux", "arm", "v7"));
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap().architecture,
            "amd64"
        );
        assert_eq!(Platform::parse("").unwrap(), Platform::host());
        assert!(Platform::parse("linux//").is_err());
    }
}
