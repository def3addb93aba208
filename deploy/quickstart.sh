#!/usr/bin/env bash
# From a fresh Debian 12 machine with Rust installed to a running container:
#   sudo deploy/quickstart.sh
# installs the Debian packages berth needs, builds berth (release), starts berthd (which starts
# its own berth-supervisor) on unix:///run/berth/berth.sock, makes a small `hello` image from
# Debian's busybox-static and runs a container from it with `berth run`.
#
# berthd keeps running afterwards (pid in /run/berth/berthd.pid, log in /var/log/berthd.log):
# try `target/release/berth run -it --rm hello sh`, or point the docker CLI at it with
# `DOCKER_HOST=unix:///run/berth/berth.sock docker ps`. Stop it with
# `kill $(cat /run/berth/berthd.pid)`; containers keep running in their shims meanwhile.
# Environment: BERTH_QUICKSTART_KEEP=0 stops berthd (and removes the container) at the end.
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
    busybox-static libseccomp-dev pkg-config runc gcc libc6-dev ca-certificates nftables

# Under sudo, cargo is usually not on root's PATH: use the invoking user's rustup install.
if ! command -v cargo >/dev/null 2>&1; then
    user_home=$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)
    export PATH="$user_home/.cargo/bin:$PATH"
    export CARGO_HOME="${CARGO_HOME:-$user_home/.cargo}"
    export RUSTUP_HOME="${RUSTUP_HOME:-$user_home/.rustup}"
fi

echo "==> building berth (release)"
cargo build --release --bins -p berth-engine -p berth-cli -p berth-supervisor -p berth-shim \
    -p berth-runtime -p berth-tests

bin=$PWD/target/release
sock=/run/berth/berth.sock
export BERTH_HOST=unix://$sock
mkdir -p /run/berth /var/lib/berth

if "$bin/berth" version >/dev/null 2>&1; then
    echo "==> berthd is already serving $sock"
else
    echo "==> starting berthd on $sock (data in /var/lib/berth, log /var/log/berthd.log)"
    nohup "$bin/berthd" -H "unix://$sock" --pidfile /run/berth/berthd.pid \
        >>/var/log/berthd.log 2>&1 </dev/null &
    for _ in $(seq 1 100); do
        "$bin/berth" version >/dev/null 2>&1 && break
        sleep 0.1
    done
    "$bin/berth" version --format 'berthd {{.Server.Version}}, API {{.Server.APIVersion}}'
fi

echo "==> making the hello image from busybox-static"
rootfs=$(mktemp -d /tmp/berth-hello.XXXXXX)
"$bin/berth-mkbundle" "$rootfs" >/dev/null
tar -C "$rootfs/rootfs" -c . | "$bin/berth" import \
    --change 'CMD ["sh", "-c", "echo Hello from berth! I am $(hostname), $(id -un) in my own namespaces, seeing: $(ls /)"]' \
    - hello:latest
rm -rf "$rootfs"
"$bin/berth" images hello

echo "==> berth run --name hello-$$ hello"
"$bin/berth" run --name "hello-$$" hello
"$bin/berth" ps -a --filter "name=hello-$$"

if [ "${BERTH_QUICKSTART_KEEP:-1}" = 0 ]; then
    "$bin/berth" rm "hello-$$" >/dev/null
    kill "$(cat /run/berth/berthd.pid)"
    echo "==> stopped berthd"
else
    echo "==> done; berthd keeps serving $sock: BERTH_HOST=$BERTH_HOST $bin/berth ps -a"
fi
