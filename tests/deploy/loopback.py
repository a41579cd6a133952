"""A real OpenSSH server on 127.0.0.1 standing in for a Jetson, for the `trtq deploy` tests.

`start_loopback` generates throwaway host and user keys, writes an sshd_config and an ssh client
config, and starts `/usr/sbin/sshd -D` as the current user (root or not; a non-root sshd can
only log that same user in). The server sets `TRTQ_DEVICE_ROOT` in every session (sshd_config
`SetEnv`): that folder is a stand-in Orin Nano on JetPack 6.2 (L4T R36.4.3, TensorRT 10.3.0.30)
written by `write_device_root`, with stand-in `trtexec` and `tegrastats` programs.

`DroppingProxy` is a TCP proxy that cuts its first connection(s) mid-transfer.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import pwd
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.standin_root import (  # noqa: F401  (re-exported)
    MODEL,
    stop_standins,
    write_device_root,
)

BINARIES = {"sshd": "/usr/sbin/sshd", "ssh": "/usr/bin/ssh", "ssh-keygen": "/usr/bin/ssh-keygen",
            "rsync": "/usr/bin/rsync"}
INSTALL_HINT = "apt-get install openssh-server openssh-client rsync"
START_TIMEOUT_S = 15.0

# --- the ssh server -----------------------------------------------------------------------------

def require_binaries() -> dict[str, str]:
    """The OpenSSH and rsync programs, or a pytest skip naming the packages to install."""
    found = {name: path if os.access(path, os.X_OK) else shutil.which(name)
             for name, path in BINARIES.items()}
    missing = sorted(name for name, path in found.items() if not path)
    if missing:
        pytest.skip(f"{', '.join(missing)} not found; the deploy loopback tests need a real "
                    f"OpenSSH server and rsync: {INSTALL_HINT}")
    return {name: str(Path(path).absolute()) for name, path in found.items()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keygen(keygen: str, path: Path, comment: str) -> Path:
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    path.chmod(0o600)
    return path


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command name), from /proc."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        table[int(entry.name)] = (int(stat[stat.rindex(")") + 2:].split()[1]), comm)
    return table


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command name) of every process below `pid`, parents before children."""
    children: dict[int, list[tuple[int, str]]] = {}
    for child, (parent, comm) in _process_table().items():
        children.setdefault(parent, []).append((child, comm))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child[0])
    return out


@dataclass(frozen=True)
class Loopback:
    """A running sshd on 127.0.0.1 that logs `user` in with `key` (never with `bad_key`)."""

    user: str
    host: str  # f"{user}@127.0.0.1"
    port: int
    key: Path
    bad_key: Path
    ssh_config: Path
    known_hosts: Path
    device_root: Path
    sshd_log: Path
    sshd_config: Path
    sshd_pid: int
    binaries: dict[str, str] = field(compare=False, hash=False)  # name -> absolute path

    @property
    def trtexec(self) -> Path:
        return self.device_root / "usr" / "src" / "tensorrt" / "bin" / "trtexec"

    @property
    def tegrastats(self) -> Path:
        return self.device_root / "usr" / "bin" / "tegrastats"

    def ssh_argv(self, *, key: Path | None = None, port: int | None = None) -> list[str]:
        """`ssh -F CONFIG -p PORT -i KEY` (append the host and the remote command)."""
        return [self.binaries["ssh"], "-F", str(self.ssh_config), "-p", str(port or self.port),
                "-i", str(key or self.key)]

    def rsync_shell(self, *, key: Path | None = None, port: int | None = None) -> str:
        """The `rsync -e` value that logs in like `ssh_argv`."""
        return shlex.join(self.ssh_argv(key=key, port=port))

    def ssh(self, command: str, *, key: Path | None = None, port: int | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run `command` on the loopback "device" (its status, stdout and stderr, not checked)."""
        return subprocess.run([*self.ssh_argv(key=key, port=port), self.host, command],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def rsync(self, *paths: str | Path, port: int | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`rsync -a -e SSH SRC... DST` (remote paths written `f"{lb.host}:{path}"`)."""
        argv = [self.binaries["rsync"], "-a", "-e", self.rsync_shell(port=port), *map(str, paths)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def read_log(self, tail: int | None = None) -> str:
        """The sshd log (its last `tail` lines), for failure messages."""
        text = self.sshd_log.read_text(errors="replace") if self.sshd_log.exists() else ""
        return "\n".join(text.splitlines()[-tail:]) if tail else text

    def sessions(self) -> list[int]:
        """The per-connection sshd processes (not the listener)."""
        return [pid for pid, comm in descendants(self.sshd_pid) if comm.startswith("sshd")]

    def kill_sessions(self, *, commands: bool = False) -> int:
        """SIGKILL every per-connection sshd: each open ssh connection drops at once (the client
        exits 255). Remote commands are left running, orphaned, as on a real network drop,
        unless `commands`. The listener keeps accepting. Returns how many processes died."""
        victims = [pid for pid, comm in descendants(self.sshd_pid)
                   if commands or comm.startswith("sshd")]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(victims)

    @contextlib.contextmanager
    def remove_trtexec(self) -> Iterator[Path]:
        """The stand-in trtexec renamed away for the block (yields where it went)."""
        away = self.trtexec.with_name("trtexec.removed")
        self.trtexec.rename(away)
        try:
            yield away
        finally:
            away.rename(self.trtexec)

    @contextlib.contextmanager
    def failing_builds(self) -> Iterator[Path]:
        """`standin/fail-build` present for the block: trtexec --onnx builds exit 1."""
        marker = self.device_root / "standin" / "fail-build"
        marker.touch()
        try:
            yield marker
        finally:
            marker.unlink(missing_ok=True)


def _sshd_config(settings: dict, penalties: bool) -> str:
    q = {key: f'"{value}"' for key, value in settings.items()}
    lines = ["ListenAddress 127.0.0.1", f"Port {settings['port']}", f"HostKey {q['host_key']}",
             f"PidFile {q['pid_file']}", f"AuthorizedKeysFile {q['authorized_keys']}",
             "PubkeyAuthentication yes", "PasswordAuthentication no",
             "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
             "PermitRootLogin prohibit-password", "LogLevel VERBOSE", "MaxStartups 50",
             "PrintMotd no", "PrintLastLog no", "Subsystem sftp internal-sftp",
             f'SetEnv "TRTQ_DEVICE_ROOT={settings["device_root"]}"']
    if penalties:
        lines.append("PerSourcePenalties no")  # OpenSSH >= 9.8 penalises failed logins
    return "\n".join(lines) + "\n"


def _check_config(sshd: str, path: Path, settings: dict) -> None:
    """Write sshd_config, with `PerSourcePenalties no` when this sshd knows it; `sshd -t` it."""
    for penalties in (True, False):
        path.write_text(_sshd_config(settings, penalties))
        test = subprocess.run([sshd, "-t", "-f", str(path)], capture_output=True, text=True,
                              timeout=30)
        if test.returncode == 0:
            return
    pytest.fail(f"`sshd -t -f {path}` rejected the loopback config:\n{test.stderr}\n"
                f"--- config ---\n{path.read_text()}")


def _write_client_files(tmp: Path, port: int, host_pub: str) -> tuple[Path, Path]:
    known_hosts = tmp / "known_hosts"
    # The exact entry, then one for any 127.0.0.1 port (DroppingProxy listens on other ports).
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub}\n[127.0.0.1]:* {host_pub}\n")
    config = tmp / "ssh_config"
    config.write_text("\n".join([
        "Host *", f'  UserKnownHostsFile "{known_hosts}"', "  StrictHostKeyChecking yes",
        "  GlobalKnownHostsFile /dev/null", "  BatchMode yes", "  IdentitiesOnly yes",
        "  ConnectTimeout 10", "  LogLevel ERROR", "  UpdateHostKeys no"]) + "\n")
    return config, known_hosts


def _wait_until_ready(proc: subprocess.Popen, lb: Loopback) -> str | None:
    """None once `ssh HOST true` works; else why not (the server died, or the time ran out)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last = "the port never accepted a connection"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"sshd exited with status {proc.returncode}"
        try:
            socket.create_connection(("127.0.0.1", lb.port), timeout=1).close()
        except OSError as exc:
            last = f"connect: {exc}"
        else:
            try:
                probe = lb.ssh("true", timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return "`ssh true` timed out"
            if probe.returncode == 0:
                return None
            last = f"`ssh true` exited {probe.returncode}: {probe.stderr.strip()}"
        time.sleep(0.05)
    return f"not ready after {START_TIMEOUT_S:.0f} s ({last})"


def _privsep_dir() -> None:
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):  # sshd's chroot when run as root
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        os.chmod("/run/sshd", 0o755)


def login_user() -> str:
    entry = pwd.getpwuid(os.getuid())
    if Path(entry.pw_shell or "/bin/sh").name in ("nologin", "false"):
        pytest.skip(f"user {entry.pw_name} has the login shell {entry.pw_shell}; sshd cannot run "
                    "commands for it")
    return entry.pw_name or getpass.getuser()


def start_loopback(tmp: Path, device_root: Path) -> tuple[Loopback, subprocess.Popen]:
    """Start sshd on a free 127.0.0.1 port; returns the Loopback and the sshd process."""
    binaries = require_binaries()
    user = login_user()
    _privsep_dir()
    host_key = _keygen(binaries["ssh-keygen"], tmp / "host_ed25519", "trtq-loopback-host")
    key = _keygen(binaries["ssh-keygen"], tmp / "user_ed25519", "trtq-loopback")
    bad_key = _keygen(binaries["ssh-keygen"], tmp / "bad_ed25519", "trtq-loopback-unknown")
    authorized = tmp / "authorized_keys"
    authorized.write_text(key.with_suffix(".pub").read_text())
    authorized.chmod(0o600)
    host_pub = " ".join(host_key.with_suffix(".pub").read_text().split()[:2])
    why = ""
    for _attempt in range(3):  # a free port can be taken between free_port() and sshd's bind
        port = free_port()
        settings = {"port": port, "host_key": host_key, "pid_file": tmp / "sshd.pid",
                    "authorized_keys": authorized, "device_root": device_root}
        config = tmp / "sshd_config"
        _check_config(binaries["sshd"], config, settings)
        ssh_config, known_hosts = _write_client_files(tmp, port, host_pub)
        log = tmp / f"sshd-{port}.log"
        with open(log, "ab") as err:
            proc = subprocess.Popen([binaries["sshd"], "-D", "-E", str(log), "-f", str(config)],
                                    stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        lb = Loopback(user, f"{user}@127.0.0.1", port, key, bad_key, ssh_config, known_hosts,
                      device_root, log, config, proc.pid, binaries)
        why = _wait_until_ready(proc, lb)
        if why is None:
            return lb, proc
        stop_sshd(proc, lb)
        if "Address already in use" not in lb.read_log():
            break
    hint = ""
    if "account is locked" in lb.read_log():  # UsePAM no: a '!' password field refuses logins
        hint = (f"\n{user}'s password in /etc/shadow starts with '!' (locked), which sshd refuses "
                f"without PAM even for keys: `usermod -p '*' {user}`, or run the tests as another "
                "user")
    pytest.fail(f"the loopback sshd did not start: {why}{hint}\n--- {log} ---\n"
                f"{lb.read_log(tail=60)}")


def stop_sshd(proc: subprocess.Popen, lb: Loopback) -> None:
    """Kill the sessions and their commands, then stop the listener (SIGTERM, then SIGKILL)."""
    lb.kill_sessions(commands=True)
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


# --- a TCP proxy that drops connections -----------------------------------------------------------

class DroppingProxy:
    """`with DroppingProxy(port, drop_after_bytes) as proxy:` forwards 127.0.0.1:proxy.port to
    127.0.0.1:port; the first `drops` connections that send more than `drop_after_bytes` from
    client to server are reset (both sockets closed abruptly); later ones pass untouched.
    `connections` counts accepted connections, `dropped` the ones cut."""

    def __init__(self, target_port: int, drop_after_bytes: int, drops: int = 1):
        self.target_port = target_port
        self.drop_after_bytes = drop_after_bytes
        self.drops = drops
        self.connections = 0
        self.dropped = 0
        self.port = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None

    def __enter__(self) -> DroppingProxy:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._threads[0].join(timeout=5)  # the accept loop: no new connections after this
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._listener.close()
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"DroppingProxy threads did not stop: {alive}"

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True,
                                  name=f"DroppingProxy-{len(self._threads)}")
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            if not select.select([self._listener], [], [], 0.05)[0]:
                continue
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            with self._lock:
                self.connections += 1
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                _reset(client)
                continue
            self._spawn(self._forward, client, upstream)

    def _claim_drop(self) -> bool:
        with self._lock:
            if self.dropped >= self.drops:
                return False
            self.dropped += 1
            return True

    def _forward(self, client: socket.socket, upstream: socket.socket) -> None:
        """Both directions through non-blocking sockets in one select loop."""
        peer = {client: upstream, upstream: client}
        pending = {client: bytearray(), upstream: bytearray()}  # bytes to send to the key
        reading = {client: True, upstream: True}
        sent_up, cut = 0, False
        for sock in peer:
            sock.setblocking(False)
        try:
            while not self._stop.is_set() and not cut:
                rlist = [s for s in peer if reading[s] and len(pending[peer[s]]) < 1 << 20]
                wlist = [s for s in peer if pending[s]]
                if not rlist and not wlist:
                    break  # both sides closed and everything delivered
                readable, writable, _ = select.select(rlist, wlist, [], 0.05)
                for sock in readable:
                    data = _io(sock.recv, 1 << 16)
                    if data is None:
                        continue
                    if not data:
                        reading[sock] = False
                        if not pending[peer[sock]]:
                            peer[sock].shutdown(socket.SHUT_WR)
                        continue
                    sent_up += len(data) if sock is client else 0
                    if sock is client and sent_up > self.drop_after_bytes and self._claim_drop():
                        cut = True
                        break
                    pending[peer[sock]] += data
                for sock in () if cut else writable:
                    del pending[sock][:_io(sock.send, pending[sock]) or 0]
                    if not pending[sock] and not reading[peer[sock]]:
                        sock.shutdown(socket.SHUT_WR)
        except OSError:  # a reset or a closed peer: pass the failure on to the other side
            cut = True
        finally:
            for sock in peer:
                if cut:
                    _reset(sock)
                else:
                    sock.close()


def _io(call, arg):
    """`call(arg)`, or None when the non-blocking socket is not ready after all."""
    try:
        return call(arg)
    except (BlockingIOError, InterruptedError):
        return None


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a TCP reset, like a dropped link."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
