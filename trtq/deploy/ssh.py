"""The system OpenSSH client as trtq uses it: one `ssh` process per remote command.

No protocol code lives here: trtq builds `ssh` and `rsync -e ssh` command lines, runs them, and
reads OpenSSH's own messages to say what went wrong. Exit status 255 is ssh's own failure
(connection, authentication, host key); anything else is the remote command's status.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trtq.errors import TrtqError

log = logging.getLogger("trtq.deploy")

SSH_FAILED = 255
# OpenSSH messages that mean "no point retrying": the fix is the user's.
_PERMANENT = (
    ("Could not resolve hostname", "cannot resolve the host name in --host {host}; check the "
     "spelling, or give the device's IP address (user@192.168.1.42)"),
    ("Connection refused", "{host} port {port} refused the connection: nothing listens for SSH "
     "there. Check --host and --port, and that sshd runs on the device (sudo systemctl status "
     "ssh)"),
    ("No route to host", "no route to {host}: check that the device is on and on this network"),
    ("Host key verification failed", "the host key of {host} is unknown or has changed. Connect "
     "once with `ssh {host}` to check and accept it (or `ssh-keygen -R HOST` if the device was "
     "reflashed), then rerun"),
    ("Permission denied", "{host} refused the login (key {key}). Install the public key on the "
     "device (`ssh-copy-id -i KEY.pub {host}`) or pass the key it accepts with --key"),
    ("Too many authentication failures", "{host} refused the login after too many keys were "
     "offered; pass the right one with --key"),
    ("Load key", "ssh cannot read the key {key}: check that it is a private key without a "
     "passphrase prompt (or load it into ssh-agent)"),
    ("bad permissions", "ssh refuses the key {key} because others can read it: chmod 600 it"),
)


# user@host: letters, digits and . _ - in the user; a name, IPv4 or IPv6 address (with
# : % [ ]) in the host. Anything else (; $ ` | & ( ) quotes, spaces, ...) is refused before
# ssh runs: a host is never a place for shell syntax.
_HOST = re.compile(r"(?:[A-Za-z0-9._][A-Za-z0-9._-]*@)?[A-Za-z0-9._:%\[\]-]+")


def check_host(host: str) -> None:
    if not host or host.startswith("-") or not _HOST.fullmatch(host):
        bad = sorted({c for c in host if not (c.isalnum() or c in "._-@:%[]")})
        why = f" (it contains {' '.join(repr(c) for c in bad)})" if bad else ""
        raise TrtqError(f"--host {host!r} is not user@name or a Host name from ~/.ssh/config"
                        f"{why}; give e.g. nvidia@192.168.1.42 or orin")


class RemoteError(TrtqError):
    """A remote command failed; `transient` when the connection dropped (worth a retry)."""

    def __init__(self, message: str, transient: bool = False, status: int | None = None):
        super().__init__(message)
        self.transient = transient
        self.status = status


@dataclass(frozen=True)
class SshTarget:
    """Where and how to log in. `config` is an ssh_config file (`ssh -F`); `options` are extra
    `-o KEY=VALUE` settings (e.g. ProxyJump=gateway)."""

    host: str
    port: int | None = None
    key: str | None = None
    config: str | None = None
    options: tuple[str, ...] = ()
    connect_timeout_s: int = 15

    def __post_init__(self) -> None:
        check_host(self.host)
        if self.port is not None and not 0 < self.port < 65536:
            raise TrtqError(f"--port must be 1-65535, got {self.port}")
        for path, what in ((self.key, "--key"), (self.config, "--ssh-config")):
            if path is not None and not Path(path).is_file():
                raise TrtqError(f"{what} {path} does not exist; give the path of the file")
        for option in self.options:
            if "=" not in option:
                raise TrtqError(f"--ssh-option takes KEY=VALUE (e.g. ProxyJump=gw), got "
                                f"{option!r}")

    def ssh_base(self) -> list[str]:
        """`ssh` and its options, without the host (the `-e` of rsync)."""
        argv = ["ssh"]
        if self.config:
            argv += ["-F", self.config]
        if self.port:
            argv += ["-p", str(self.port)]
        if self.key:
            argv += ["-i", self.key, "-o", "IdentitiesOnly=yes"]
        argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout_s}",
                 "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3"]
        for option in self.options:
            argv += ["-o", option]
        return argv

    def ssh_argv(self, command: str) -> list[str]:
        return [*self.ssh_base(), self.host, command]

    def explain(self, stderr: str, status: int) -> RemoteError:
        """An ssh failure (status 255) as an error with the fix, transient or not."""
        for needle, message in _PERMANENT:
            if needle.lower() in stderr.lower():
                text = message.format(host=self.host, port=self.port or 22,
                                      key=self.key or "(ssh's default keys)")
                return RemoteError(f"{text}. ssh said: {_last_line(stderr)}", status=status)
        return RemoteError(f"the connection to {self.host} failed or dropped: "
                           f"{_last_line(stderr) or 'no message'}", transient=True, status=status)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def require_local_tools(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        raise TrtqError(f"{', '.join(missing)} not found on this machine; install OpenSSH's "
                        "client and rsync (Debian/Ubuntu: sudo apt install openssh-client rsync)")


@dataclass
class Retry:
    """How often a dropped connection is retried, and the wait between tries (doubling)."""

    attempts: int = 4
    first_wait_s: float = 1.0
    sleep: Callable[[float], None] = time.sleep

    def run(self, what: str, action: Callable[[], object]):
        """`action()`, retried while it raises a transient RemoteError."""
        wait = self.first_wait_s
        for attempt in range(1, self.attempts + 1):
            try:
                return action()
            except RemoteError as exc:
                if not exc.transient or attempt == self.attempts:
                    if exc.transient:
                        raise RemoteError(f"{what}: gave up after {attempt} tries; {exc}",
                                          transient=True, status=exc.status) from exc
                    raise
                log.warning("%s: %s; retrying in %.0f s (try %d of %d)", what, exc, wait,
                            attempt + 1, self.attempts)
                self.sleep(wait)
                wait *= 2
        raise AssertionError("unreachable")


class Remote:
    """Runs commands on the device, or (dry run) only records them.

    Every command that would touch the device is appended to `commands` as a shell line, so a
    dry run can print exactly what a real run executes.
    """

    def __init__(self, target: SshTarget, dry_run: bool = False, retry: Retry | None = None):
        self.target = target
        self.dry_run = dry_run
        self.retry = retry or Retry()
        self.commands: list[tuple[str, str]] = []  # (what, shell line)
        self.tries: dict[str, int] = {}

    def record(self, what: str, argv: list[str], stdin_from: str | None = None) -> None:
        line = shlex.join(argv) + (f" < {shlex.quote(stdin_from)}" if stdin_from else "")
        self.commands.append((what, line))

    def run(self, what: str, command: str, stdin: str | None = None,
            stdin_name: str | None = None, timeout_s: float | None = None,
            read_only: bool = False) -> str:
        """Run `command` on the device and return its stdout (retried on a dropped link).

        A dry run records it and returns '' without connecting, except `read_only` commands
        (the probe), which a dry run does execute when it is allowed to connect.
        """
        argv = self.target.ssh_argv(command)
        self.record(what, argv, stdin_name)
        if self.dry_run and not read_only:
            return ""

        def attempt() -> str:
            self.tries[what] = self.tries.get(what, 0) + 1
            return self._once(what, argv, stdin, timeout_s)

        return self.retry.run(what, attempt)

    def _once(self, what: str, argv: list[str], stdin: str | None,
              timeout_s: float | None) -> str:
        log.debug("ssh: %s", shlex.join(argv))
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                                  errors="replace", timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise RemoteError(f"{what}: no answer from {self.target.host} within {timeout_s} s",
                              transient=True) from exc
        if done.returncode == SSH_FAILED:
            raise self.target.explain(done.stderr, done.returncode)
        if done.returncode != 0:
            detail = (done.stderr.strip() or done.stdout.strip())[-2000:]
            raise RemoteError(f"{what} failed on {self.target.host} (exit status "
                              f"{done.returncode}):\n{detail}", status=done.returncode)
        return done.stdout


def quote_path(path: str) -> str:
    """A remote path for a shell command line; a leading ~/ stays unquoted so it expands."""
    if path.startswith("~/"):
        return "~/" + shlex.quote(path[2:])
    return shlex.quote(os.fspath(path))
