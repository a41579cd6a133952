"""Resumable, checksum-verified file transfer with rsync over the system ssh.

rsync writes each file under a temporary name and renames it when complete, so neither side
ever holds a half-written file under its real name. `--partial-dir` keeps what an interrupted
transfer had received in a hidden folder, and the next try resumes from it (rsync's delta
transfer matches the bytes already there). After the copy, SHA-256 sums taken on both sides
must agree.
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from trtq.artifacts import sha256_file
from trtq.deploy.ssh import Remote, RemoteError, quote_path
from trtq.errors import TrtqError

log = logging.getLogger("trtq.deploy")

PARTIAL_DIR = ".trtq-partial"
# rsync exit codes that mean the link broke (rsync(1) EXIT VALUES): 10 socket I/O, 12 protocol
# data stream, 20 signal, 30 and 35 timeouts, 255 ssh itself.
_TRANSIENT = {10, 12, 20, 30, 35, 255}
_STAT = re.compile(r"^(Literal data|Matched data|Total transferred file size): ([\d,.]+)",
                   re.MULTILINE)


@dataclass
class TransferStats:
    """What rsync reported: bytes sent as new data, bytes matched from a partial file."""

    literal_bytes: int = 0
    matched_bytes: int = 0
    transferred_file_bytes: int = 0
    tries: int = 0


def rsync_argv(remote: Remote, source: str, destination: str,
               bwlimit_kib: int | None = None) -> list[str]:
    """The rsync command line (program first); `host:path` names the device side."""
    argv = ["rsync", "--recursive", "--links", "--copy-links", "--times", "--perms",
            f"--partial-dir={PARTIAL_DIR}", "--delay-updates", "--timeout=60", "--stats",
            "-e", shlex.join(remote.target.ssh_base())]
    if bwlimit_kib:
        argv.append(f"--bwlimit={bwlimit_kib}")
    return [*argv, source, destination]


def _parse_stats(text: str) -> TransferStats:
    values = {key: int(float(num.replace(",", ""))) for key, num in _STAT.findall(text)}
    return TransferStats(values.get("Literal data", 0), values.get("Matched data", 0),
                         values.get("Total transferred file size", 0))


def _rsync_once(remote: Remote, argv: list[str], what: str) -> TransferStats:
    done = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False)
    if done.returncode == 0:
        return _parse_stats(done.stdout)
    if done.returncode == 255 or "connection unexpectedly closed" in done.stderr:
        error = remote.target.explain(done.stderr, done.returncode)
        if not error.transient:
            raise error
    transient = done.returncode in _TRANSIENT
    raise RemoteError(f"{what}: rsync exit status {done.returncode}: "
                      f"{done.stderr.strip()[-1500:]}", transient=transient,
                      status=done.returncode)


def rsync(remote: Remote, source: str, destination: str, what: str,
          bwlimit_kib: int | None = None) -> TransferStats:
    """Copy with rsync, retrying a dropped connection (each retry resumes the partial file)."""
    argv = rsync_argv(remote, source, destination, bwlimit_kib)
    remote.record(what, argv)
    if remote.dry_run:
        return TransferStats()
    tries = 0

    def attempt() -> TransferStats:
        nonlocal tries
        tries += 1
        return _rsync_once(remote, argv, what)

    stats = remote.retry.run(what, attempt)
    stats.tries = tries
    return stats


def remote_sums(remote: Remote, folder: str, names: list[str], what: str) -> dict[str, str]:
    """SHA-256 of files in a device folder, by name (sha256sum on the device)."""
    if not names:
        return {}
    files = " ".join(shlex.quote(n) for n in names)
    out = remote.run(what, f"cd {quote_path(folder)} && sha256sum -- {files}")
    return parse_sums(out)


def parse_sums(text: str) -> dict[str, str]:
    """`sha256sum` output → {name: hex digest}."""
    sums = {}
    for line in text.splitlines():
        digest, _, name = line.strip().partition("  ")
        if digest and name:
            sums[name.lstrip("*")] = digest
    return sums


def verify(local: dict[str, str], remote: dict[str, str], direction: str) -> None:
    """Refuse a transfer whose files differ between the two sides."""
    bad = sorted(name for name in local if remote.get(name) != local[name])
    if bad:
        raise TrtqError(f"{direction}: SHA-256 differs for {', '.join(bad)} after the copy; "
                        "the file changed during the transfer or the storage is failing. "
                        "Rerun the deploy (it resumes); if it repeats, check the device's disk")


def local_sums(folder: Path, names: list[str]) -> dict[str, str]:
    return {name: sha256_file(folder / name) for name in names}


def stage_files(folder: Path) -> list[str]:
    """Every file under `folder`, as relative POSIX paths (symlinks followed)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and PARTIAL_DIR not in p.parts)
