#!/usr/bin/env python3
"""docker-py against berthd: the acceptance cases of issue 4 through the Python SDK.

Run by tests/tests/dockerpy.rs with DOCKER_HOST pointed at a berthd in a temp dir and
BERTH_TEST_IMAGE (a busybox-static image loaded there), BERTH_TEST_PREFIX (unique names),
BERTH_TEST_DIR (scratch space). Every check asserts real values; any failure makes the
script exit 1 after running the rest, with a traceback per failed check.
"""

import os
import socket
import sys
import time
import traceback

import docker
import docker.errors

IMAGE = os.environ["BERTH_TEST_IMAGE"]
PREFIX = os.environ["BERTH_TEST_PREFIX"]
WORK = os.environ["BERTH_TEST_DIR"]
LABELS = {"berth-dockerpy": PREFIX}

client = docker.from_env(version="auto", timeout=60)
failures = []


def check(fn):
    """Runs one named check, recording a failure instead of stopping the script."""
    started = time.monotonic()
    try:
        fn()
    except Exception:  # noqa: BLE001 - every failure is reported
        failures.append(fn.__name__)
        print(f"FAIL {fn.__name__}", flush=True)
        traceback.print_exc()
        return
    print(f"ok   {fn.__name__} ({time.monotonic() - started:.1f}s)", flush=True)


def eq(got, want, what=""):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def wait_for(what, cond, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def name(suffix):
    return f"{PREFIX}-{suffix}"


def run_detached(suffix, command, **kw):
    return client.containers.run(
        IMAGE, command, detach=True, name=name(suffix), labels=LABELS, **kw
    )


def system_version_ping_info():
    assert client.ping() is True
    eq(client.api.api_version, "1.45", "negotiated API version")
    v = client.version()
    eq(v["ApiVersion"], "1.45", "ApiVersion")
    eq(v["MinAPIVersion"], "1.24", "MinAPIVersion")
    eq(v["Os"], "linux", "Os")
    assert v["Version"], v
    info = client.info()
    for key in ("Containers", "ContainersRunning", "Images", "NCPU", "MemTotal"):
        assert isinstance(info[key], int), (key, info[key])
    assert info["Images"] >= 1, info["Images"]
    assert info["ServerVersion"] == v["Version"], (info["ServerVersion"], v["Version"])


def run_attached_returns_output_and_raises_on_failure():
    out = client.containers.run(
        IMAGE, ["sh", "-c", "echo hello; echo to-stderr >&2"], remove=True, labels=LABELS
    )
    eq(out, b"hello\n", "stdout of run")
    try:
        client.containers.run(
            IMAGE, ["sh", "-c", "echo bad >&2; exit 3"], name=name("fails"), labels=LABELS
        )
        raise AssertionError("ContainerError not raised")
    except docker.errors.ContainerError as e:
        eq(e.exit_status, 3, "exit status")
        assert b"bad" in e.stderr, e.stderr
    c = client.containers.get(name("fails"))
    eq(c.status, "exited", "status")
    eq(c.attrs["State"]["ExitCode"], 3, "ExitCode")
    c.remove()


def run_detached_logs_follow_and_wait():
    c = run_detached(
        "follow",
        ["sh", "-c", "for i in 1 2 3 4; do echo line$i; sleep 0.2; done; exit 4"],
    )
    got = b"".join(c.logs(stream=True, follow=True))
    eq(got, b"line1\nline2\nline3\nline4\n", "followed logs")
    eq(c.wait(timeout=20), {"StatusCode": 4, "Error": None}, "wait")
    c.reload()
    eq(c.status, "exited", "status")
    eq(c.attrs["State"]["ExitCode"], 4, "ExitCode")
    eq(c.logs(tail=1), b"line4\n", "logs tail=1")
    eq(c.logs(stdout=False), b"", "stderr only")
    c.remove()


def exec_run_gives_exit_codes_and_output():
    c = run_detached("exec", ["sleep", "300"])
    r = c.exec_run(["sh", "-c", "echo out; exit 5"])
    eq((r.exit_code, r.output), (5, b"out\n"), "exec_run")
    r = c.exec_run(
        ["sh", "-c", "echo $A $(pwd) $(id -u)"],
        environment={"A": "b"},
        workdir="/tmp",
        user="1000",
    )
    eq((r.exit_code, r.output), (0, b"b /tmp 1000\n"), "exec_run env/workdir/user")
    r = c.exec_run(["sh", "-c", "echo o; echo e >&2; exit 1"], demux=True)
    eq(r.exit_code, 1, "demux exit")
    eq(r.output, (b"o\n", b"e\n"), "demux output")
    r = c.exec_run(["nosuch-binary"])
    assert r.exit_code in (126, 127), r
    eid = client.api.exec_create(c.id, ["sh", "-c", "exit 9"])["Id"]
    client.api.exec_start(eid)
    ins = client.api.exec_inspect(eid)
    eq((ins["Running"], ins["ExitCode"]), (False, 9), "exec_inspect after start")
    c.remove(force=True)


def attach_socket_carries_stdin_and_output():
    c = run_detached("attach", ["sh", "-c", "read l; echo got:$l; exit 2"], stdin_open=True)
    s = client.api.attach_socket(
        c.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
    )
    raw = s._sock
    raw.settimeout(15)
    raw.sendall(b"hello\n")
    data = b""
    while b"got:hello" not in data:
        try:
            chunk = raw.recv(4096)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    s.close()
    assert b"got:hello\n" in data, data
    # Multiplexed framing: stream 1, three zero bytes, big-endian length.
    eq(data[:4], b"\x01\x00\x00\x00", "frame header")
    eq(c.wait(timeout=20)["StatusCode"], 2, "exit code after attach")
    eq(c.logs(), b"got:hello\n", "logs after attach")
    c.remove()


def stop_kill_restart_deliver_signals():
    c = run_detached(
        "signals",
        [
            "sh",
            "-c",
            "trap 'echo got-usr1' USR1; trap 'echo got-term; exit 7' TERM; echo ready; "
            "while :; do sleep 0.1; done",
        ],
    )
    wait_for("ready", lambda: b"ready" in c.logs())
    c.kill(signal="SIGUSR1")
    wait_for("got-usr1", lambda: b"got-usr1" in c.logs())
    c.reload()
    eq(c.status, "running", "status after USR1")
    started = time.monotonic()
    c.stop(timeout=10)
    assert time.monotonic() - started < 8, "stop waited for the timeout"
    c.reload()
    eq((c.status, c.attrs["State"]["ExitCode"]), ("exited", 7), "after stop")
    eq(c.logs(), b"ready\ngot-usr1\ngot-term\n", "logs")

    k = run_detached("kill", ["sleep", "300"])
    k.kill()
    eq(k.wait(timeout=20)["StatusCode"], 137, "killed")

    r = run_detached("restart", ["sh", "-c", "trap 'exit 0' TERM; echo start; while :; do sleep 0.1; done"])
    wait_for("start", lambda: b"start" in r.logs())
    r.reload()
    pid = r.attrs["State"]["Pid"]
    r.restart(timeout=10)
    r.reload()
    eq(r.status, "running", "after restart")
    assert r.attrs["State"]["Pid"] not in (0, pid), (pid, r.attrs["State"]["Pid"])
    wait_for("second start", lambda: r.logs() == b"start\nstart\n")
    for x in (c, k, r):
        x.remove(force=True)


def pause_unpause_stats_top_rename():
    c = run_detached("pause", ["sleep", "300"], mem_limit="64m")
    c.pause()
    c.reload()
    eq((c.status, c.attrs["State"]["Paused"]), ("paused", True), "paused")
    c.unpause()
    c.reload()
    eq((c.status, c.attrs["State"]["Paused"]), ("running", False), "unpaused")
    eq(c.attrs["HostConfig"]["Memory"], 64 * 1024 * 1024, "HostConfig.Memory")

    s = c.stats(stream=False)
    eq(s["name"], "/" + name("pause"), "stats name")
    eq(s["id"], c.id, "stats id")
    assert s["memory_stats"]["usage"] > 0, s["memory_stats"]
    eq(s["memory_stats"]["limit"], 64 * 1024 * 1024, "memory limit")
    assert s["cpu_stats"]["cpu_usage"]["total_usage"] > 0, s["cpu_stats"]
    assert s["pids_stats"]["current"] >= 1, s["pids_stats"]
    assert s["read"], s

    top = c.top()
    assert "PID" in top["Titles"], top
    assert any("sleep 300" in " ".join(p) for p in top["Processes"]), top

    c.rename(name("renamed"))
    c.reload()
    eq(c.name, name("renamed"), "renamed")
    listed = client.containers.list(filters={"label": f"berth-dockerpy={PREFIX}", "status": "running"})
    assert c.id in [x.id for x in listed], listed
    c.remove(force=True)


def images_list_get_tag_save_load():
    img = client.images.get(IMAGE)
    assert img.id.startswith("sha256:"), img.id
    assert IMAGE in img.tags, img.tags
    assert any(i.id == img.id for i in client.images.list()), "image not listed"
    eq([i.id for i in client.images.list(name=IMAGE)], [img.id], "list by name")
    repo = f"berth-dockerpy/{PREFIX}"
    assert img.tag(repo, "v1") is True
    tagged = f"{repo}:v1"
    path = os.path.join(WORK, "saved.tar")
    with open(path, "wb") as f:
        for chunk in client.images.get(tagged).save(named=tagged):
            f.write(chunk)
    assert os.path.getsize(path) > 500_000, os.path.getsize(path)
    client.images.remove(tagged)
    try:
        client.images.get(tagged)
        raise AssertionError("removed tag still there")
    except docker.errors.ImageNotFound as e:
        eq(e.status_code, 404, "status")
    with open(path, "rb") as f:
        loaded = client.images.load(f.read())
    eq([i.id for i in loaded], [img.id], "loaded ids")
    assert tagged in client.images.get(tagged).tags
    h = img.history()
    assert h and "Created" in h[0], h


# 2 MiB of numbered text lines: run returns the log, and a JSON log (dockerd's too) keeps
# text only, so the data is text.
BIG = "awk 'BEGIN{for(i=0;i<32768;i++) printf \"%08d %054d\\n\", i, 0}'"


def big_output_arrives_whole():
    """Issue 10: 2 MiB through run, attach (stream) and exec_run, compared by checksum."""
    import hashlib

    data = "".join(f"{i:08d} {0:054d}\n" for i in range(32768)).encode()
    assert len(data) == 2 * 1024 * 1024
    want = hashlib.sha256(data).hexdigest()
    for i in range(10):
        out = client.containers.run(IMAGE, ["sh", "-c", BIG], remove=True, labels=LABELS)
        eq(hashlib.sha256(out).hexdigest(), want, f"containers.run, round {i}")
    for i in range(10):
        c = client.containers.create(IMAGE, ["sh", "-c", "sleep 0.5; " + BIG], labels=LABELS)
        stream = c.attach(stream=True, stdout=True, stderr=False, logs=True)
        c.start()
        got = b"".join(stream)
        eq(hashlib.sha256(got).hexdigest(), want, f"attach stream, round {i}")
        c.wait(timeout=30)
        c.remove()
    c = run_detached("bigexec", ["sleep", "600"])
    for i in range(10):
        r = c.exec_run(["sh", "-c", BIG])
        eq(r.exit_code, 0, "exec exit code")
        eq(hashlib.sha256(r.output).hexdigest(), want, f"exec_run, round {i}")
    c.remove(force=True)


def failed_start_raises_and_removes():
    """Issue 10: a failed start is an APIError, and auto_remove (the daemon's --rm) removes
    the container, as dockerd does."""
    before = len(client.containers.list(all=True, filters={"label": f"berth-dockerpy={PREFIX}"}))
    try:
        client.containers.run(IMAGE, ["/no/such/binary"], auto_remove=True, labels=LABELS)
    except docker.errors.APIError as e:
        if "no such file or directory" not in str(e):
            raise AssertionError(f"unexpected error: {e}")
    else:
        raise AssertionError("run of a missing binary did not raise")
    after = client.containers.list(all=True, filters={"label": f"berth-dockerpy={PREFIX}"})
    eq(len(after), before, "containers after a failed --rm run")


def errors_are_typed_with_status_codes():
    try:
        client.containers.get("berth-nope")
        raise AssertionError("NotFound not raised")
    except docker.errors.NotFound as e:
        eq(e.status_code, 404, "status")
        assert "No such container: berth-nope" in str(e.explanation), e.explanation
    c = client.containers.create(IMAGE, ["true"], name=name("taken"), labels=LABELS)
    try:
        client.containers.create(IMAGE, ["true"], name=name("taken"), labels=LABELS)
        raise AssertionError("conflict not raised")
    except docker.errors.APIError as e:
        eq(e.status_code, 409, "status")
        assert "is already in use by container" in str(e.explanation), e.explanation
        assert c.id in str(e.explanation), e.explanation
    try:
        client.containers.create("berth-nope/img:1", ["true"])
        raise AssertionError("ImageNotFound not raised")
    except docker.errors.ImageNotFound as e:
        eq(e.status_code, 404, "status")
    try:
        c.exec_run(["true"])
        raise AssertionError("exec into a stopped container did not fail")
    except docker.errors.APIError as e:
        eq(e.status_code, 409, "status")
    try:
        client.api.kill(c.id, signal="NOPE")
        raise AssertionError("bad signal accepted")
    except docker.errors.APIError as e:
        eq(e.status_code, 400, "status")
    c.start()
    eq(c.wait(timeout=20)["StatusCode"], 0, "wait")
    c.remove()
    try:
        c.reload()
        raise AssertionError("removed container still inspectable")
    except docker.errors.NotFound:
        pass


def create_options_take_effect():
    """Issue 11: options as docker-py sends them reach the container."""
    from docker.types import Mount, Ulimit

    out = client.containers.run(
        IMAGE,
        [
            "sh",
            "-c",
            "grep ' /m ' /proc/mounts; ls -l /dev/x; cat /etc/resolv.conf /etc/hosts; "
            "ulimit -n; cat /proc/sys/net/core/somaxconn; grep CapEff /proc/self/status",
        ],
        remove=True,
        labels=LABELS,
        mounts=[Mount("/m", None, type="tmpfs", tmpfs_size=1 << 20)],
        devices=["/dev/full:/dev/x:rwm"],
        dns=["192.0.2.9"],
        dns_search=["py.example"],
        extra_hosts={"db.py": "10.9.8.7"},
        ulimits=[Ulimit(name="nofile", soft=111, hard=222)],
        sysctls={"net.core.somaxconn": "99"},
        cap_drop=["ALL"],
        cap_add=["KILL"],
    ).decode()
    for want in ("tmpfs /m tmpfs", "1,   7", "nameserver 192.0.2.9", "search py.example",
                 "10.9.8.7\tdb.py", "\n111\n", "\n99\n", "0000000000000020"):
        if want not in out:
            raise AssertionError(f"{want!r} missing from:\n{out}")
    try:
        client.containers.create(IMAGE, "true", nano_cpus=999 * 10**9, labels=LABELS)
        raise AssertionError("--cpus 999 accepted")
    except docker.errors.APIError as e:
        eq(e.status_code, 400, "status")
        if "Range of CPUs is from 0.01" not in str(e):
            raise


def archive_diff_commit_update():
    """Issue 11: put/get archive, diff, commit and update through docker-py."""
    import io
    import tarfile

    c = run_detached("arch", ["sleep", "600"], restart_policy={"Name": "on-failure", "MaximumRetryCount": 2})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = b"from docker-py\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        info.uid = 4242
        t.addfile(info, io.BytesIO(data))
    ok = c.put_archive("/tmp", buf.getvalue())
    eq(ok, True, "put_archive")
    stream, stat = c.get_archive("/tmp/hello.txt")
    eq(stat["name"], "hello.txt", "stat name")
    eq(stat["size"], 15, "stat size")
    raw = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        eq(t.extractfile("hello.txt").read(), b"from docker-py\n", "content")
    eq(c.exec_run(["stat", "-c", "%u", "/tmp/hello.txt"]).output, b"0\n", "owner without copyUIDGID")
    changes = {(d["Path"], d["Kind"]) for d in c.diff()}
    if ("/tmp/hello.txt", 1) not in changes:
        raise AssertionError(f"diff: {changes}")
    img = c.commit(repository=name("committed"), tag="v1", message="py commit", changes=["CMD [\"cat\", \"/tmp/hello.txt\"]"])
    eq(client.containers.run(img.id, remove=True), b"from docker-py\n", "committed image runs")
    c.update(mem_limit="64m", memswap_limit="128m", cpu_period=100000, cpu_quota=33000)
    c.reload()
    eq(c.attrs["HostConfig"]["Memory"], 64 * 1024 * 1024, "Memory")
    eq(c.attrs["HostConfig"]["RestartPolicy"], {"Name": "on-failure", "MaximumRetryCount": 2}, "policy")
    quota = c.exec_run(["sh", "-c", "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max"])
    eq(quota.output, b"33000\n", "cpu quota")
    c.remove(force=True)
    client.images.remove(img.id)


def restart_policy_and_health():
    """Issue 11: a restart policy and a health check seen through docker-py."""
    c = run_detached("rp", ["sh", "-c", "exit 4"], restart_policy={"Name": "on-failure", "MaximumRetryCount": 1})
    wait_for("one policy restart", lambda: (c.reload(), c.attrs["RestartCount"] == 1 and c.status == "exited")[1])
    eq(c.attrs["State"]["ExitCode"], 4, "exit code")
    c.remove()
    h = run_detached(
        "health",
        ["sleep", "600"],
        healthcheck={"test": ["CMD", "true"], "interval": 300_000_000, "retries": 1},
    )
    wait_for("healthy", lambda: (h.reload(), h.attrs["State"]["Health"]["Status"] == "healthy")[1])
    h.remove(force=True)


def networks_ports_and_names():
    """networks.create/get/list/connect/disconnect/prune, ports= published and read back,
    names resolved on a user network, dockerd's errors typed."""
    import urllib.request

    net = client.networks.create(
        name("net"), driver="bridge", labels=LABELS,
        ipam=docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet="10.232.9.0/24", gateway="10.232.9.1")]
        ),
    )
    eq(client.networks.get(net.id).name, name("net"), "networks.get")
    eq([n.name for n in client.networks.list(names=[name("net")])], [name("net")], "list by name")
    eq(
        [n.name for n in client.networks.list(filters={"label": f"berth-dockerpy={PREFIX}"})],
        [name("net")],
        "list by label",
    )
    try:
        client.networks.create(name("net2"), ipam=docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet="10.232.9.128/25")]))
        raise AssertionError("an overlapping subnet was accepted")
    except docker.errors.APIError as e:
        eq(e.status_code, 403, "overlap status")
    try:
        client.networks.get("no-such-net")
        raise AssertionError("a missing network was found")
    except docker.errors.NotFound:
        pass

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    web = run_detached(
        "netweb",
        ["sh", "-c", "mkdir /w && echo from-py > /w/index.html && exec httpd -f -p 80 -h /w"],
        network=name("net"),
        ports={"80/tcp": port},
    )
    web.reload()
    eq(web.ports, {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}, "ports")
    eq(
        web.attrs["NetworkSettings"]["Networks"][name("net")]["IPAddress"].startswith("10.232.9."),
        True,
        "address on the network",
    )
    body = wait_for(
        "published port",
        lambda: _get(f"http://127.0.0.1:{port}/"),
    )
    eq(body, b"from-py\n", "published port body")
    out = client.containers.run(
        IMAGE, ["sh", "-c", f"timeout 5 wget -q -O - http://{name('netweb')}/"],
        network=name("net"), remove=True, labels=LABELS,
    )
    eq(out, b"from-py\n", "by name on the network")

    other = run_detached("netother", ["sleep", "300"])
    net.connect(other, aliases=["pyalias"])
    net.reload()
    eq(sorted(c.name for c in net.containers), sorted([name("netweb"), name("netother")]), "members")
    out = web.exec_run(["nslookup", "pyalias"]).output.decode()
    if "10.232.9." not in out:
        raise AssertionError(f"alias not resolved: {out}")
    net.disconnect(other)
    net.reload()
    eq([c.name for c in net.containers], [name("netweb")], "after disconnect")
    try:
        net.remove()
        raise AssertionError("a network in use was removed")
    except docker.errors.APIError as e:
        eq(e.status_code, 403, "remove in use")
    web.remove(force=True)
    other.remove(force=True)
    pruned = client.networks.prune(filters={"label": f"berth-dockerpy={PREFIX}"})
    eq(pruned["NetworksDeleted"], [name("net")], "prune")


def _get(url):
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.read()
    except OSError:
        return None


def volumes_create_mount_and_prune():
    """volumes.create/get/list/remove/prune, a named volume mounted by volumes=, its data
    kept across containers, 409 while in use."""
    vol = client.volumes.create(name("vol"), labels=LABELS)
    eq(client.volumes.get(name("vol")).attrs["Driver"], "local", "driver")
    eq([v.name for v in client.volumes.list(filters={"label": f"berth-dockerpy={PREFIX}"})],
       [name("vol")], "list by label")
    client.containers.run(IMAGE, ["sh", "-c", "echo py-data > /v/f"], remove=True,
                          volumes={name("vol"): {"bind": "/v", "mode": "rw"}}, labels=LABELS)
    out = client.containers.run(IMAGE, ["cat", "/v/f"], remove=True,
                                volumes=[f"{name('vol')}:/v:ro"], labels=LABELS)
    eq(out, b"py-data\n", "data kept")
    holder = client.containers.create(IMAGE, ["true"], name=name("volholder"),
                                      volumes={name("vol"): {"bind": "/v"}}, labels=LABELS)
    try:
        vol.remove()
        raise AssertionError("a volume in use was removed")
    except docker.errors.APIError as e:
        eq(e.status_code, 409, "remove in use")
    holder.remove(v=True)
    pruned = client.volumes.prune(filters={"label": f"berth-dockerpy={PREFIX}", "all": "true"})
    eq(pruned["VolumesDeleted"], [name("vol")], "prune all")
    try:
        client.volumes.get(name("vol"))
        raise AssertionError("a pruned volume is still there")
    except docker.errors.NotFound:
        pass

def images_build_from_path_fileobj_and_errors():
    """images.build: a directory with .dockerignore and build args, labels, several steps
    cached the second time, a Dockerfile as a file object, and BuildError for a failing RUN."""
    import io
    d = os.path.join(WORK, "pybuild")
    os.makedirs(os.path.join(d, "skip"), exist_ok=True)
    with open(os.path.join(d, "Dockerfile"), "w") as f:
        f.write(
            f"FROM {IMAGE}\nARG WHO=nobody\nCOPY . /ctx/\nRUN echo hello $WHO > /greeting\n"
            'CMD ["cat", "/greeting"]\n'
        )
    with open(os.path.join(d, "keep.txt"), "w") as f:
        f.write("keep\n")
    with open(os.path.join(d, "skip", "x"), "w") as f:
        f.write("x\n")
    with open(os.path.join(d, ".dockerignore"), "w") as f:
        f.write("skip\n")
    tag = name("built").lower() + ":v1"
    img, logs = client.images.build(
        path=d, tag=tag, buildargs={"WHO": "py"}, labels={"via": "docker-py"}, rm=True
    )
    text = "".join(x.get("stream", "") for x in logs)
    if "Successfully built" not in text:
        raise AssertionError(text)
    eq(img.tags, [tag], "tags")
    eq(img.labels.get("via"), "docker-py", "label")
    out = client.containers.run(tag, remove=True)
    eq(out, b"hello py\n", "default command")
    files = client.containers.run(tag, ["sh", "-c", "cd /ctx && find . -type f | sort"], remove=True)
    eq(files, b"./.dockerignore\n./Dockerfile\n./keep.txt\n", "context")
    _, logs = client.images.build(path=d, tag=tag, buildargs={"WHO": "py"}, labels={"via": "docker-py"})
    text = "".join(x.get("stream", "") for x in logs)
    eq(text.count("Using cache"), 5, "cached steps (the labels are a last LABEL step)")
    img2, _ = client.images.build(
        fileobj=io.BytesIO(f"FROM {IMAGE}\nENV FROM_FILEOBJ=1\n".encode()), rm=True
    )
    if "FROM_FILEOBJ=1" not in img2.attrs["Config"]["Env"]:
        raise AssertionError(img2.attrs["Config"]["Env"])
    try:
        client.images.build(fileobj=io.BytesIO(f"FROM {IMAGE}\nRUN exit 3\n".encode()))
        raise AssertionError("a failing RUN built")
    except docker.errors.BuildError as e:
        eq(e.msg, "The command '/bin/sh -c exit 3' returned a non-zero code: 3", "message")
    try:
        client.images.build(fileobj=io.BytesIO(b"FROM x\nBOGUS y\n"))
        raise AssertionError("a bad Dockerfile built")
    except docker.errors.APIError as e:
        eq(e.status_code, 400, "status")
        if "unknown instruction: BOGUS" not in str(e):
            raise AssertionError(str(e))
    try:
        client.images.build(path="http://127.0.0.1:9/context.tar")
        raise AssertionError("a remote context was accepted")
    except docker.errors.APIError as e:
        eq(e.status_code, 400, "remote status")
        if "berthd builds only from a context sent in the request body" not in str(e):
            raise AssertionError(str(e))
    client.images.remove(tag)


for fn in (
    system_version_ping_info,
    volumes_create_mount_and_prune,
    networks_ports_and_names,
    create_options_take_effect,
    archive_diff_commit_update,
    restart_policy_and_health,
    run_attached_returns_output_and_raises_on_failure,
    run_detached_logs_follow_and_wait,
    exec_run_gives_exit_codes_and_output,
    attach_socket_carries_stdin_and_output,
    stop_kill_restart_deliver_signals,
    pause_unpause_stats_top_rename,
    images_list_get_tag_save_load,
    images_build_from_path_fileobj_and_errors,
    errors_are_typed_with_status_codes,
    big_output_arrives_whole,
    failed_start_raises_and_removes,
):
    check(fn)

left = client.containers.list(all=True, filters={"label": f"berth-dockerpy={PREFIX}"})
for c in left:
    c.remove(force=True)

if failures:
    print(f"{len(failures)} docker-py check(s) failed: {', '.join(failures)}", flush=True)
    sys.exit(1)
print("all docker-py checks passed", flush=True)
