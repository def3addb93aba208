//! Where the workspace's binaries and the host tools tests rely on live.

use std::path::{Path, PathBuf};

/// Debian's busybox-static, the only program inside test rootfs trees.
pub const BUSYBOX: &str = "/bin/busybox";

/// Debian's runc, the reference runtime for differential tests and benchmarks.
pub const RUNC: &str = "/usr/sbin/runc";

/// The cargo profile directory this executable was built into (`target/debug`, `target/release`).
///
/// Integration tests run from `target/<profile>/deps/<name>-<hash>`, binaries from
/// `target/<profile>/<name>`; both resolve to `target/<profile>`, so this works with any
/// `CARGO_TARGET_DIR`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe is readable on Linux");
    let mut dir = exe
        .parent()
        .expect("an executable lives in a directory")
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

/// Path of a workspace binary built in the same profile as the caller, e.g. `berth-runtime`.
///
/// `$BERTH_BIN_DIR`, when set, is searched instead (for testing installed binaries). The path is
/// returned even if the file does not exist; see [`require_workspace_binary`].
pub fn workspace_binary(name: &str) -> PathBuf {
    match std::env::var_os("BERTH_BIN_DIR") {
        Some(dir) => Path::new(&dir).join(name),
        None => profile_dir().join(name),
    }
}

/// Like [`workspace_binary`], but panics with the build command to run if it is missing.
///
/// `cargo test` builds only the binaries of the package under test, so the others must be built
/// first (`deploy/test.sh` runs `cargo build --workspace --bins`).
pub fn require_workspace_binary(name: &str) -> PathBuf {
    let path = workspace_binary(name);
    assert!(
        path.is_file(),
        "{} not found: build it first (cargo build -p <package> --bin {name}), \
         or run the suite with deploy/test.sh",
        path.display()
    );
    path
}

/// The workspace root (the directory with the top `Cargo.toml`), found from the profile dir.
pub fn workspace_root() -> PathBuf {
    // target/<profile> -> target -> workspace (when the target dir is the default one).
    let mut dir = profile_dir();
    while !dir.join("Cargo.lock").is_file() {
        if !dir.pop() {
            return PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("tests/ has a parent")
                .to_path_buf();
        }
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_dir_is_not_deps() {
        let dir = profile_dir();
        assert_ne!(dir.file_name().unwrap(), "deps");
        assert!(
            workspace_binary("x").starts_with(&dir) || std::env::var_os("BERTH_BIN_DIR").is_some()
        );
    }

    #[test]
    fn workspace_root_has_cargo_toml() {
        assert!(workspace_root().join("Cargo.toml").is_file());
    }
}
