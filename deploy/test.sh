#!/usr/bin/env bash
# Runs berth's whole test suite, root tests included: `sudo deploy/test.sh`.
#
# Root tests (namespaces, cgroups, mounts) are marked #[ignore = "needs root: ..."], so this runs
# `cargo test -- --include-ignored`. `cargo test` builds only the binaries of the package under
# test, so the workspace's binaries (berth-runtime, ...) are built first: tests find them next to
# themselves in target/debug. Arguments replace `--workspace` as what `cargo test` selects, e.g.
# `sudo deploy/test.sh -p berth-tests --test runtime`.
# BERTH_TEST_RUNTIME=runc runs the runtime tests against Debian's runc instead of berth-runtime.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "deploy/test.sh: root tests need root; run: sudo deploy/test.sh" >&2
    exit 1
fi

# Under sudo, cargo is usually not on root's PATH: use the invoking user's rustup install.
if ! command -v cargo >/dev/null 2>&1; then
    user_home=$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)
    if [ -x "$user_home/.cargo/bin/cargo" ]; then
        export PATH="$user_home/.cargo/bin:$PATH"
        export CARGO_HOME="${CARGO_HOME:-$user_home/.cargo}"
        export RUSTUP_HOME="${RUSTUP_HOME:-$user_home/.rustup}"
    else
        echo "deploy/test.sh: cargo not found (install Rust, or run with sudo -E env PATH=\$PATH)" >&2
        exit 1
    fi
fi

for tool in /bin/busybox /usr/sbin/runc; do
    if [ ! -x "$tool" ]; then
        echo "deploy/test.sh: $tool missing: apt-get install busybox-static runc" >&2
        exit 1
    fi
done

cargo build --workspace --bins
if [ $# -eq 0 ]; then
    set -- --workspace
fi
cargo test --no-fail-fast "$@" -- --include-ignored
