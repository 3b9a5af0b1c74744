"""Hostile functions in the real container, each attack blocked, the host within its limits.

Every test runs one attack from inside a function on the Docker executor and checks both sides:
what the function saw (an error, a bound) and what the host sees (its own process alive, the
container's cgroup within the manifest's memory and pid limits, nothing written to the host's disk).
The attacks: network egress, writing outside the tmpfs, a fork bomb, a memory bomb, setuid
binaries, mount (also from a new user namespace), raw sockets, reading the host's files, filling
the disk (tmpfs, /dev/shm, the log), writing to any host-backed mount (the socket's directory
included), and signals to processes outside the container.
"""

from __future__ import annotations

import asyncio
import errno
import glob
import json
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from p2pfaas.errors import MemoryExceeded
from p2pfaas.exec.base import FunctionSpec
from p2pfaas.exec.container_config import CONTAINER_CODE_DIR, CONTAINER_SOCKET_DIR
from p2pfaas.exec.docker_exec import DockerExecutor
from p2pfaas.exec.metering import CGROUP_ROOT, cgroup_dirs
from p2pfaas.exec.run_dir import SOCKET_NAME

from .conftest import make_function

pytestmark = pytest.mark.docker

MEMORY_MB = 96
PIDS_LIMIT = 32
TMPFS_MB = 8

HOSTILE = r"""
import ctypes, errno, os, signal, socket, subprocess, sys, time

def _err(exc):
    return {"error": type(exc).__name__, "errno": getattr(exc, "errno", None)}

def _try(action):
    try:
        return {"ok": action()}
    except OSError as exc:
        return _err(exc)

def egress(req):
    out = {"interfaces": sorted(name for _, name in socket.if_nameindex())}
    for host, port in req["targets"]:
        out[f"tcp {host}:{port}"] = _try(lambda: socket.create_connection((host, port), timeout=2).close())
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out["udp"] = _try(lambda: udp.sendto(b"x", (req["targets"][0][0], 53)))
    out["dns"] = _try(lambda: socket.getaddrinfo("pypi.org", 443))
    return out

def write(req):
    def attempt(path):
        with open(path, "w") as f:
            f.write("x")
    return {path: _try(lambda: attempt(path)) for path in req["paths"]}

def fork_bomb(req):
    # Every child forks too, as a real bomb does; all of them then wait to be killed.
    forked, error = 0, None
    while True:
        try:
            pid = os.fork()
        except OSError as exc:
            error = _err(exc)
            break
        if pid == 0:
            try:
                while True:
                    os.fork()
            except OSError:
                time.sleep(60)
            os._exit(0)
        forked += 1
    time.sleep(0.2)
    os.kill(-1, signal.SIGKILL)  # every process this user may signal, except this one
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
    return {"forked": forked, "error": error}

def memory_child(req):
    # A child process hoards memory; the cgroup's OOM killer ends it, not the host.
    code = "h = []\nwhile True: h.append(bytearray(1 << 20))"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True)
    return {"returncode": child.returncode}

def memory_bomb(req):
    hoard = []
    while True:
        hoard.append(bytearray(1 << 20))

def setuid(req):
    out = {"setuid0": _try(lambda: os.setuid(0)), "setgid0": _try(lambda: os.setgid(0))}
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    out["self"] = {key: status[key].split() for key in ("Uid", "CapEff", "CapPrm", "CapBnd", "NoNewPrivs")}
    # A setuid-root binary, held waiting for a password on a pipe while its ids are read.
    su = subprocess.Popen(["/usr/bin/su", "-c", "id", "root"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(0.3)
    try:
        text = open(f"/proc/{su.pid}/status").read()
        out["su_uids"] = [line.split()[1:] for line in text.splitlines() if line.startswith("Uid:")][0]
    except OSError as exc:
        out["su_uids"] = _err(exc)
    su.kill()
    out["su_output"] = su.communicate()[0].decode(errors="replace")[-300:]
    mounted = subprocess.run(["/usr/bin/mount", "-t", "tmpfs", "none", "/tmp"], capture_output=True)
    out["mount_binary"] = {"returncode": mounted.returncode, "stderr": mounted.stderr.decode()[-300:]}
    return out

def mount(req):
    libc = ctypes.CDLL(None, use_errno=True)
    def call(result):
        return {"result": result, "errno": errno.errorcode.get(ctypes.get_errno(), "")}
    os.makedirs("/tmp/m", exist_ok=True)
    out = {"mount": call(libc.mount(b"none", b"/tmp/m", b"tmpfs", 0, None))}
    out["bind_root"] = call(libc.mount(b"/", b"/tmp/m", None, 4096, None))  # MS_BIND
    CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
    out["unshare"] = call(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS))
    out["mount_after_unshare"] = call(libc.mount(b"none", b"/tmp/m", b"tmpfs", 0, None))
    return out

def raw_sockets(req):
    return {
        "inet_raw": _try(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()),
        "packet": _try(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()),
        "inet6_raw": _try(lambda: socket.socket(socket.AF_INET6, socket.SOCK_RAW, 58).close()),
    }

def read(req):
    def attempt(path):
        with open(path, "rb") as f:
            return f.read(64).decode(errors="replace")
    out = {path: _try(lambda: attempt(path)) for path in req["paths"]}
    out["pid1"] = open("/proc/1/cmdline", "rb").read().decode(errors="replace")
    out["pids"] = sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
    return out

def fill_disk(req):
    out = {}
    for directory in ("/tmp", "/dev/shm", "/var/tmp", "/"):
        written, error = 0, None
        try:
            with open(os.path.join(directory, "fill"), "wb") as f:
                chunk = b"\0" * (1 << 20)
                while written < (256 << 20):
                    f.write(chunk)
                    f.flush()
                    written += len(chunk)
        except OSError as exc:
            error = _err(exc)
        out[directory] = {"written": written, "error": error}
        try:
            os.unlink(os.path.join(directory, "fill"))
        except OSError:
            pass
    # And the log: what the call prints through Python's streams is its own output (64 KiB kept);
    # what it writes below them ends up in the container's log file on the host.
    for _ in range(20):
        sys.stdout.write("y" * (1 << 20) + "\n")
        os.write(1, b"y" * (1 << 20) + b"\n")
        os.write(2, b"z" * (1 << 20) + b"\n")
    return out

def host_mounts(req):
    # Every mount backed by the host's disk (bind mounts, the image's overlay): not the kernel's
    # virtual file systems and not the container's own size-capped tmpfs (RAM, charged to it).
    virtual = ("proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "devtmpfs")
    mounts = {}
    for line in open("/proc/self/mountinfo"):
        fields, _, rest = line.partition(" - ")
        point, fstype = fields.split()[4], rest.split()[0]
        if fstype not in virtual and not point.startswith(("/proc/", "/sys/", "/dev/")):
            mounts[point] = fstype

    def create(directory):
        with open(os.path.join(directory, "fill"), "wb") as f:
            for _ in range(4):  # what gets there, if anything does, stays small
                f.write(b"\0" * (1 << 20))
                f.flush()

    out = {}
    for point in mounts:
        if os.path.isdir(point):
            out[point] = {
                "create": _try(lambda: create(point)),
                "mkdir": _try(lambda: os.mkdir(os.path.join(point, "d"))),
                "chmod": _try(lambda: os.chmod(point, 0o777)),
            }
        else:
            out[point] = {"append": _try(lambda: open(point, "ab").close())}
    sock = "/run/p2pfaas/shim.sock"
    out["socket"] = {
        "rename": _try(lambda: os.rename(sock, sock + ".x")),
        "unlink": _try(lambda: os.unlink(sock)),
        "link": _try(lambda: os.link(sock, sock + ".y")),
    }
    return {"mounts": mounts, "attempts": out}

def signal_others(req):
    out = {"host_pid": _try(lambda: os.kill(req["pid"], signal.SIGKILL))}
    out["host_pid_0"] = _try(lambda: os.kill(req["pid"], 0))
    out["all"] = _try(lambda: os.kill(-1, signal.SIGKILL))
    out["pgid_of_host"] = _try(lambda: os.killpg(req["pid"], signal.SIGKILL))
    return out

def _burn(cpu_s):
    end = time.process_time() + cpu_s
    while time.process_time() < end:
        pass

def _spawn_spinner(req):
    # A child in its own session (out of the shim's process group) that has used `burn_s` of CPU
    # when this returns, and spins on after.
    ready, done = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.setsid()
        _burn(req["burn_s"])
        os.write(done, b"x")
        while True:
            pass
    os.close(done)
    os.read(ready, 1)
    return pid

def background(req):
    return _spawn_spinner(req)

def procs(req):
    time.sleep(req.get("s", 0))
    return sorted(int(name) for name in os.listdir("/proc") if name.isdigit())

def subverted_background(req):
    # The function runs inside the shim: it can switch off the shim's own clean-up.
    import sys
    sys.modules["p2pfaas_shim.serving"].end_strays = lambda: None
    return _spawn_spinner(req)

def thread(req):
    import threading
    threading.Thread(target=_burn, args=(600,), daemon=True).start()
    return "left a thread"

def main(request):
    return globals()[request["op"]](request)
"""


def _body(payload: object) -> bytes:
    return json.dumps(payload).encode()


@pytest.fixture
async def executor(runtime_image: str, short_dir: Path) -> AsyncIterator[DockerExecutor]:
    owner = f"test-{uuid.uuid4().hex[:12]}"
    executor = DockerExecutor(
        owner_id=owner,
        work_dir=short_dir / "run",
        image=runtime_image,
        pids_limit=PIDS_LIMIT,
        tmpfs_mb=TMPFS_MB,
    )
    await executor.start()
    yield executor
    await executor.aclose()


@pytest.fixture
def hostile(tmp_path: Path) -> FunctionSpec:
    return make_function(tmp_path / "hostile", memory_mb=MEMORY_MB, source=HOSTILE)


async def attack(executor: DockerExecutor, fn: FunctionSpec, op: str, **args: Any) -> Any:
    result = await executor.invoke(fn, _body({"op": op, **args}), timeout_s=60)
    assert result.ok, f"{op}: {result.error_type}: {result.error_message}\n{result.traceback}"
    return json.loads(result.output)


async def settled_log_bytes(log_path: str) -> int:
    """The bytes a container's log holds on the host, its rotated file included.

    dockerd copies the container's output after the function has returned, and while it rotates
    it renames the file before opening a new one, so the file may be missing for a moment. Read
    until the file is there and two reads 50 ms apart agree (at most ~5 s; not a timing test).
    """
    last = -1
    for _ in range(100):
        total, present = 0, False
        for name in glob.glob(glob.escape(log_path) + "*"):
            try:
                total += os.stat(name).st_size
            except FileNotFoundError:  # renamed away between listing and stat
                continue
            present = present or name == log_path
        if present and total == last:
            return total
        last = total
        await asyncio.sleep(0.05)
    raise AssertionError(f"the container's log never settled: {log_path}")


def cgroup_file(executor: DockerExecutor, fn: FunctionSpec, controller: str, name: str) -> int:
    """A counter of the function's live container, read on the host (cgroup v1 names; v2 mapped)."""
    [instance_id] = executor.instance_ids(fn.digest)
    container_id = executor.container_id(instance_id)
    assert container_id is not None
    found = cgroup_dirs(container_id)
    assert found is not None, "the container's cgroup is not where metering looks"
    _, memory_dir, version = found
    if version == 2:
        v2_names = {"memory.limit_in_bytes": "memory.max", "memory.max_usage_in_bytes": "memory.peak"}
        return int((memory_dir / v2_names.get(name, name)).read_text())
    if controller == "memory":
        return int((memory_dir / name).read_text())
    relative = memory_dir.relative_to(CGROUP_ROOT / "memory")
    return int((CGROUP_ROOT / controller / relative / name).read_text())


async def still_serves(executor: DockerExecutor, fn: FunctionSpec) -> None:
    result = await executor.invoke(fn, _body({"op": "read", "paths": []}), timeout_s=60)
    assert result.ok


async def test_network_egress_is_impossible(executor: DockerExecutor, hostile: FunctionSpec) -> None:
    # 192.0.2.1 is TEST-NET (never routed), 172.17.0.1 Docker's bridge on this host, 127.0.0.1 the
    # container's own loopback. Nothing is listening anywhere: only the error kind matters.
    seen = await attack(
        executor, hostile, "egress", targets=[["192.0.2.1", 80], ["172.17.0.1", 22], ["127.0.0.1", 80]]
    )
    assert seen["interfaces"] == ["lo"]
    unreachable = {"error": "OSError", "errno": 101}  # ENETUNREACH: there is no route at all
    assert seen["tcp 192.0.2.1:80"] == seen["tcp 172.17.0.1:22"] == seen["udp"] == unreachable
    assert seen["tcp 127.0.0.1:80"]["error"] == "ConnectionRefusedError"  # only itself
    assert "error" in seen["dns"]


async def test_nothing_outside_the_tmpfs_is_writable(executor: DockerExecutor, hostile: FunctionSpec) -> None:
    code = CONTAINER_CODE_DIR
    paths = [
        "/etc/passwd",
        "/usr/bin/evil",
        "/evil",
        "/var/tmp/evil",
        f"{code}/handler.py",
        f"{code}/new.py",
        "/tmp/ok",
    ]
    seen = await attack(executor, hostile, "write", paths=paths)
    assert seen.pop("/tmp/ok") == {"ok": None}
    for path, outcome in seen.items():
        assert outcome.get("errno") in (13, 30), f"{path}: {outcome}"  # EACCES or EROFS
    assert not (hostile.code_dir / "new.py").exists()
    assert "evil" not in (hostile.code_dir / "handler.py").read_text()[-10:]


async def test_a_fork_bomb_stops_at_the_pid_limit(executor: DockerExecutor, hostile: FunctionSpec) -> None:
    host_pids_before = len(os.listdir("/proc"))
    seen = await attack(executor, hostile, "fork_bomb")
    assert seen["error"] == {"error": "BlockingIOError", "errno": 11}  # EAGAIN from the pids cgroup
    assert 0 < seen["forked"] < PIDS_LIMIT
    assert cgroup_file(executor, hostile, "pids", "pids.max") == PIDS_LIMIT
    assert cgroup_file(executor, hostile, "pids", "pids.current") <= 2  # the bomb is gone
    assert len(os.listdir("/proc")) < host_pids_before + PIDS_LIMIT
    await still_serves(executor, hostile)


async def test_a_memory_bomb_is_killed_within_the_limit(
    executor: DockerExecutor, hostile: FunctionSpec
) -> None:
    seen = await attack(executor, hostile, "memory_child")
    assert seen["returncode"] == -signal.SIGKILL  # the cgroup's OOM killer, not the host's
    limit = cgroup_file(executor, hostile, "memory", "memory.limit_in_bytes")
    assert limit == MEMORY_MB << 20
    peak = cgroup_file(executor, hostile, "memory", "memory.max_usage_in_bytes")
    assert limit * 0.9 < peak <= limit  # it reached the limit and no further
    with pytest.raises(MemoryExceeded):  # in the shim's own process: the instance dies, is replaced
        await executor.invoke(hostile, _body({"op": "memory_bomb"}), timeout_s=60)
    await still_serves(executor, hostile)


async def test_setuid_binaries_gain_nothing(executor: DockerExecutor, hostile: FunctionSpec) -> None:
    seen = await attack(executor, hostile, "setuid")
    assert seen["setuid0"]["error"] == seen["setgid0"]["error"] == "PermissionError"
    me = seen["self"]
    assert me["Uid"] == ["65534"] * 4 and me["NoNewPrivs"] == ["1"]
    assert me["CapEff"] == me["CapPrm"] == me["CapBnd"] == ["0000000000000000"]
    assert seen["su_uids"] == ["65534"] * 4, seen  # no-new-privileges: the setuid bit is ignored
    assert seen["mount_binary"]["returncode"] != 0


async def test_mount_is_refused_even_in_a_new_user_namespace(
    executor: DockerExecutor, hostile: FunctionSpec
) -> None:
    seen = await attack(executor, hostile, "mount")
    for call in ("mount", "bind_root", "unshare", "mount_after_unshare"):
        assert seen[call] == {"result": -1, "errno": "EPERM"}, (call, seen)


async def test_raw_sockets_are_refused(executor: DockerExecutor, hostile: FunctionSpec) -> None:
    seen = await attack(executor, hostile, "raw_sockets")
    for kind, outcome in seen.items():
        assert outcome["error"] == "PermissionError", (kind, outcome)


async def test_the_hosts_files_are_out_of_sight(
    executor: DockerExecutor, hostile: FunctionSpec, short_dir: Path
) -> None:
    secret = short_dir / "host-secret"
    secret.write_text("the volunteer's secret")
    sibling = hostile.code_dir.parent / "sibling-secret"
    sibling.write_text("another function's code")
    paths = [
        str(secret),
        f"{CONTAINER_CODE_DIR}/../sibling-secret",
        "/etc/shadow",
        "/proc/kcore",
        "/var/run/docker.sock",
    ]
    paths += [str(Path.home() / ".p2pfaas/node/node.key"), "/root/.bashrc", "/proc/1/root/etc/hostname"]
    seen = await attack(executor, hostile, "read", paths=paths)
    assert "volunteer" not in json.dumps(seen) and "another function" not in json.dumps(seen)
    for path in paths[:-1]:
        assert "error" in seen[path], (path, seen[path])
    assert "shim" in seen["pid1"]  # PID 1 is our shim: a separate pid namespace
    assert seen["pids"] == [1]  # and nothing of the host's processes is visible


async def test_the_disk_cannot_be_filled(
    executor: DockerExecutor, hostile: FunctionSpec, docker_client: Any
) -> None:
    seen = await attack(executor, hostile, "fill_disk")
    assert seen["/tmp"]["error"]["errno"] == 28 and seen["/tmp"]["written"] <= TMPFS_MB << 20  # ENOSPC
    assert seen["/dev/shm"]["error"]["errno"] == 28 and seen["/dev/shm"]["written"] <= TMPFS_MB << 20
    assert seen["/var/tmp"]["written"] == seen["/"]["written"] == 0
    assert seen["/var/tmp"]["error"]["errno"] == seen["/"]["error"]["errno"] == 30  # EROFS
    [instance_id] = executor.instance_ids(hostile.digest)
    container = docker_client.containers.get(executor.container_id(instance_id))
    assert await settled_log_bytes(container.attrs["LogPath"]) <= 3 << 20  # 40 MB printed, the log is capped
    [sizes] = docker_client.api.containers(all=True, size=True, filters={"id": container.id})
    assert sizes.get("SizeRw", 0) == 0  # nothing written to the container's own layer


async def test_no_host_backed_mount_is_writable(executor: DockerExecutor, hostile: FunctionSpec) -> None:
    """The socket's directory is a host directory bind-mounted read-write: it must not be a way
    onto the volunteer's disk (it was: a function wrote 200 MB there, past every tmpfs cap). Nor
    may any other host-backed mount the container has."""
    seen = await attack(executor, hostile, "host_mounts")
    mounts = seen["mounts"]
    assert {"/", CONTAINER_CODE_DIR, CONTAINER_SOCKET_DIR} <= set(mounts), mounts  # the probe saw them
    for point, attempts in seen["attempts"].items():
        for what, outcome in attempts.items():
            assert outcome.get("errno") in (errno.EPERM, errno.EACCES, errno.EROFS), (point, what, outcome)
    [instance_id] = executor.instance_ids(hostile.digest)
    on_host = executor.run_dir.instance_dir(instance_id)
    assert [entry.name for entry in on_host.iterdir()] == [SOCKET_NAME]  # nothing but the socket
    await still_serves(executor, hostile)  # and it is still reachable


async def test_processes_outside_the_container_cannot_be_signalled(
    executor: DockerExecutor, hostile: FunctionSpec
) -> None:
    victim = subprocess.Popen(["sleep", "60"])  # noqa: ASYNC220 - returns at once
    try:
        seen = await attack(executor, hostile, "signal_others", pid=victim.pid)
        assert victim.poll() is None  # alive
    finally:
        victim.kill()
        victim.wait()
    assert seen["host_pid"]["error"] == seen["host_pid_0"]["error"] == "ProcessLookupError"
    assert seen["pgid_of_host"]["error"] == "ProcessLookupError"
    # kill(-1) reaches only the container's own processes: here none but itself (ESRCH).
    assert seen["all"] in ({"ok": None}, {"error": "ProcessLookupError", "errno": 3})
    await still_serves(executor, hostile)


async def test_a_background_process_ends_with_its_call_and_is_billed_to_it(
    executor: DockerExecutor, hostile: FunctionSpec
) -> None:
    """A function forks a `setsid` child that spins and returns at once: the child used to keep
    spinning after the call, unbilled, and its CPU was billed to the next call on the instance."""
    burn_s = 0.3
    spawned = await executor.invoke(hostile, _body({"op": "background", "burn_s": burn_s}), timeout_s=60)
    assert spawned.ok, spawned.traceback
    assert spawned.cpu_s >= burn_s  # what the child used until it was killed is this call's
    [instance_id] = executor.instance_ids(hostile.digest)
    # The next call on the same instance sleeps a while (no CPU of its own) and looks around.
    after = await executor.invoke(hostile, _body({"op": "procs", "s": 0.3}), timeout_s=60)
    assert after.ok and not after.cold and executor.instance_ids(hostile.digest) == [instance_id]
    assert json.loads(after.output) == [1]  # only the shim: the child is gone
    assert after.cpu_s < 0.1  # and nothing spun beside it to be billed to it
    assert cgroup_file(executor, hostile, "pids", "pids.current") == 2  # the shim: main thread, watchdog


@pytest.mark.parametrize("op", ["subverted_background", "thread"])
async def test_an_instance_left_running_something_is_replaced(
    executor: DockerExecutor, hostile: FunctionSpec, docker_client: Any, op: str
) -> None:
    """The shim's clean-up runs in the function's own process, so a function can undo it (or leave
    a thread, which no kill reaches): the host counts the container's tasks after the call and
    replaces the instance, so nothing left runs, or is billed, beside a later call."""
    assert (await executor.invoke(hostile, _body({"op": "procs"}), timeout_s=60)).ok
    [instance_id] = executor.instance_ids(hostile.digest)
    container_id = executor.container_id(instance_id)
    left = await executor.invoke(hostile, _body({"op": op, "burn_s": 0.1}), timeout_s=60)
    assert left.ok, left.traceback
    assert executor.instance_ids(hostile.digest) == []  # destroyed before the call returned
    with pytest.raises(docker.errors.NotFound):
        await asyncio.to_thread(docker_client.containers.get, container_id)
    fresh = await executor.invoke(hostile, _body({"op": "procs"}), timeout_s=60)
    assert fresh.ok and fresh.cold and json.loads(fresh.output) == [1]
