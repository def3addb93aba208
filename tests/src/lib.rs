//! Shared helpers for berth's root and end-to-end tests.
//!
//! Every test that runs real containers builds on the same few pieces:
//!
//! | piece | what it gives you |
//! |---|---|
//! | [`SpecBuilder`] | an OCI `config.json` shaped like `runc spec`'s default, with setters for what tests vary |
//! | [`Bundle`] | a temp dir with a busybox-static `rootfs/` and the `config.json` from a [`SpecBuilder`] |
//! | [`rootfs`] | the busybox tree itself ([`rootfs::populate`]) and its tarball/image layer ([`tarball::Layer`]) |
//! | [`Runtime`] | one OCI runtime binary (berth-runtime or runc) with its own temp `--root`, typed verbs, and a `Drop` that force-deletes every container it created |
//! | [`Cmd`] / [`Output`] | running any binary with a bounded wait, output captured to files (never a pipe a container could keep open) |
//! | [`cgroup`] | cgroup v1 / hybrid / v2 detection and the host path of a container's limit files |
//! | [`console`] | a `--console-socket` listener that receives the pty master over `SCM_RIGHTS` |
//! | [`daemon::Daemon`] | a long-running process (berthd, supervisor, registry) with its log in a file, readiness waits (unix socket, TCP, predicate), SIGTERM-then-SIGKILL on drop, and its log tail printed when the test fails |
//! | [`bins`] | paths of workspace binaries (`target/<profile>/berth-runtime`, ...) and host tools |
//!
//! A typical root test:
//!
//! ```no_run
//! use berth_tests::{skip_unless_root, unique_id, Bundle, Runtime, SpecBuilder};
//!
//! #[test]
//! #[ignore = "needs root: runs a container"]
//! fn echo_prints_its_argument() {
//!     skip_unless_root!();
//!     let rt = Runtime::under_test();
//!     let id = unique_id("echo");
//!     let bundle = Bundle::busybox(SpecBuilder::new(&id).args(["echo", "hi"])).unwrap();
//!     let out = rt.run(&id, &bundle);
//!     assert_eq!(out.code(), 0, "{out}");
//!     assert_eq!(out.stdout.trim(), "hi");
//! }
//! ```
//!
//! Conventions: every wait is bounded (see [`DEFAULT_TIMEOUT`]); ids come from [`unique_id`] and
//! cgroups paths are `/berth-test/<id>`, so tests run in parallel and across runtimes without
//! colliding; helpers that a test cannot continue without panic with context instead of returning
//! errors, while reusable building blocks ([`Bundle`], [`Cmd`], [`tarball`]) return `anyhow::Result`.
//!
//! Which runtime [`Runtime::under_test`] picks: `$BERTH_TEST_RUNTIME` if set (a path, or `runc`),
//! otherwise the workspace's `berth-runtime` next to the test binary.

#![warn(missing_docs)]

pub mod bins;
pub mod bundle;
pub mod cgroup;
pub mod cli;
pub mod console;
pub mod daemon;
pub mod http;
pub mod ids;
pub mod process;
pub mod registry;
pub mod rootfs;
pub mod runtime;
pub mod spec;
pub mod supervisor;
pub mod tarball;

use std::time::Duration;

pub use bundle::Bundle;
pub use ids::unique_id;
pub use process::{wait_until, Cmd, Output};
pub use runtime::{ContainerState, Runtime};
pub use spec::SpecBuilder;

/// How long any single helper waits for a process or a condition unless told otherwise.
///
/// Generous because CI machines have two cores shared with the compiler, but finite so a hung
/// runtime fails the test instead of hanging the suite.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether this process runs with uid 0 (needed for namespaces, cgroups and mounts).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Returns early from a test (with a note on stderr) unless it runs as root.
///
/// Root tests are also marked `#[ignore = "needs root: ..."]`, so a plain `cargo test` skips them
/// and `cargo test -- --include-ignored` as non-root passes them vacuously instead of failing.
#[macro_export]
macro_rules! skip_unless_root {
    () => {
        if !$crate::is_root() {
            eprintln!("skipping {}: needs root", module_path!());
            return;
        }
    };
}
