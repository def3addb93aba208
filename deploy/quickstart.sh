#!/usr/bin/env bash
# From a fresh Debian 12 machine with Rust installed to a running container:
#   sudo deploy/quickstart.sh
# installs the Debian packages berth needs, builds berth (release), writes a busybox OCI bundle
# and runs it with berth-runtime, printing what the container sees.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "quickstart: containers need root; run: sudo deploy/quickstart.sh" >&2
    exit 1
fi

echo "==> installing Debian packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
    busybox-static libseccomp-dev pkg-config runc gcc libc6-dev ca-certificates

# Under sudo, cargo is usually not on root's PATH: use the invoking user's rustup install.
if ! command -v cargo >/dev/null 2>&1; then
    user_home=$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)
    export PATH="$user_home/.cargo/bin:$PATH"
    export CARGO_HOME="${CARGO_HOME:-$user_home/.cargo}"
    export RUSTUP_HOME="${RUSTUP_HOME:-$user_home/.rustup}"
fi

echo "==> building berth (release)"
cargo build --release -p berth-runtime -p berth-tests --bin berth-runtime --bin berth-mkbundle

bundle=/tmp/berth-quickstart
state=/run/berth-quickstart
id="quickstart-$$"
echo "==> writing a busybox bundle to $bundle"
rm -rf "$bundle"
target/release/berth-mkbundle "$bundle" --hostname berth-quickstart --id "$id" -- \
    sh -c 'echo "hello from $(hostname), pid $$ in its own namespaces"; id; echo rootfs: $(ls /); grep CapEff /proc/self/status'

echo "==> target/release/berth-runtime --root $state run --bundle $bundle $id"
target/release/berth-runtime --root "$state" run --bundle "$bundle" "$id"
echo "==> done; the bundle stays in $bundle for your own experiments (see README.md)"
