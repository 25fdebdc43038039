"""A subprocess sandbox for untrusted code: time, memory, file-size and open-file limits, and no network.

Every run starts a fresh Python interpreter (``python -I``: no user site, no PYTHON* variables, an
empty environment) in a private temporary directory, and that interpreter confines *itself* before
running anything untrusted, so no ``preexec_fn`` runs in the (possibly multi-threaded) caller:

1. **Network.** It first tries an unprivileged user + network namespace (``unshare(CLONE_NEWUSER |
   CLONE_NEWNET)``, the mechanism behind ``unshare -rn``): the kernel then gives the process and all
   its children only a loopback interface that is down, so every ``connect`` fails, whatever language
   or library makes it. This needs no root, but the kernel must allow unprivileged user namespaces
   (most Linux distributions do; Docker's default seccomp profile does not). When it is refused, the
   sandbox falls back to a **Python audit hook** (PEP 578, which cannot be removed once installed)
   that refuses socket connect/bind/send and name lookups, process creation and ctypes foreign calls
   inside the interpreter. The hook stops ordinary and most deliberate network use from Python code;
   it cannot stop a C extension that calls libc directly. Each result says which mode was enforced
   (``network="netns"`` or ``"audit-hook"``).
2. **Resources.** ``RLIMIT_AS`` (memory), ``RLIMIT_CPU`` (CPU seconds), ``RLIMIT_FSIZE`` (largest file,
   which also caps what can be printed, since output goes to files), ``RLIMIT_NOFILE`` and no core
   dumps; the caller adds a wall-clock timeout and kills the whole process group when it passes.

What this does not give: filesystem isolation beyond the working directory (the code can read what
the user running it can read), or protection from code that inspects the harness's own memory. For
hostile code at scale, run the executor inside a container or VM; the interface stays the same.

>>> r = run_python("print(6 * 7)", limits=SandboxLimits(timeout_s=10))
>>> r.stdout.strip(), r.returncode, r.timed_out
('42', 0, False)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lifelong.loop.errors import VerifierConfigError

__all__ = ["CONFINE_SOURCE", "SandboxLimits", "SandboxResult", "run_command", "run_python"]


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for one run. ``cpu_s`` defaults to the wall-clock timeout rounded up plus one second.

    >>> SandboxLimits(timeout_s=2.5).cpu_seconds
    4
    """

    timeout_s: float = 5.0
    memory_mb: int = 512
    cpu_s: int | None = None
    max_file_mb: int = 16
    max_open_files: int = 64
    max_output_chars: int = 100_000
    network: bool = False
    isolation: str = "auto"

    def __post_init__(self) -> None:
        if self.isolation not in ("auto", "netns", "audit-hook"):
            raise VerifierConfigError(
                f"SandboxLimits.isolation must be 'auto', 'netns' (refuse to run without a network namespace) "
                f"or 'audit-hook', got {self.isolation!r}")
        if self.timeout_s <= 0 or self.memory_mb < 32 or self.max_file_mb < 1:
            raise VerifierConfigError(
                f"sandbox limits too small (timeout_s={self.timeout_s}, memory_mb={self.memory_mb}, "
                f"max_file_mb={self.max_file_mb}); a Python interpreter needs >= 32 MB and a positive timeout"
            )

    @property
    def cpu_seconds(self) -> int:
        """The CPU-time limit in whole seconds."""
        return self.cpu_s if self.cpu_s is not None else int(self.timeout_s) + 2

    def to_dict(self) -> dict[str, object]:
        """JSON form (part of a verifier's pinned configuration)."""
        return {"timeout_s": self.timeout_s, "memory_mb": self.memory_mb, "cpu_s": self.cpu_seconds,
                "max_file_mb": self.max_file_mb, "max_open_files": self.max_open_files,
                "max_output_chars": self.max_output_chars, "network": self.network, "isolation": self.isolation}


@dataclass(frozen=True)
class SandboxResult:
    """What a sandboxed run did. ``signal`` names the signal that killed it (``SIGKILL`` after a
    timeout, ``SIGXCPU`` past the CPU limit, ``SIGXFSZ`` past the file-size limit).

    >>> SandboxResult(0, "ok", "", False, 0.1, "netns").timed_out
    False
    """

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float
    network: str
    signal: str | None = None
    truncated: bool = False
    detail: dict[str, object] = field(default_factory=dict)


# The confinement prologue, run by the sandboxed interpreter itself before any untrusted code. It is
# part of every code verifier's pinned hash, so weakening it changes the verifier's identity.
CONFINE_SOURCE = r'''
import ctypes, json, os, resource, sys
def _confine(cfg):
    mode = "none"
    if not cfg["network"] and cfg["isolation"] == "audit-hook":
        mode = "audit-hook"
    elif not cfg["network"]:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            uid, gid = os.getuid(), os.getgid()
            if libc.unshare(0x10000000 | 0x40000000) != 0:  # CLONE_NEWUSER | CLONE_NEWNET
                raise OSError(ctypes.get_errno(), "unshare refused")
            # Map our own uid/gid inside the namespace so the working directory stays ours.
            for path, text in (("/proc/self/setgroups", "deny"), ("/proc/self/uid_map", f"0 {uid} 1"),
                               ("/proc/self/gid_map", f"0 {gid} 1")):
                try:
                    with open(path, "w") as f:
                        f.write(text)
                except OSError:
                    pass
            mode = "netns"
        except (OSError, AttributeError):
            if cfg["isolation"] == "netns":
                sys.stderr.write("@@sandbox-network unavailable\n")
                os._exit(97)
            mode = "audit-hook"
    mb = 1024 * 1024
    for name, value in (("RLIMIT_AS", cfg["memory_mb"] * mb), ("RLIMIT_CPU", cfg["cpu_s"]),
                        ("RLIMIT_FSIZE", cfg["max_file_mb"] * mb), ("RLIMIT_NOFILE", cfg["max_open_files"]),
                        ("RLIMIT_CORE", 0)):
        resource.setrlimit(getattr(resource, name), (value, value))
    if mode == "audit-hook":
        blocked = ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
                   "socket.gethostbyname", "socket.gethostbyaddr", "subprocess.Popen", "os.system", "os.exec",
                   "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "ctypes.dlopen", "ctypes.dlsym",
                   "ctypes.call_function", "_posixsubprocess.fork_exec")
        def _hook(event, args):
            if event in blocked:
                raise PermissionError(f"sandbox: {event} is not allowed (no network, no subprocesses)")
        sys.addaudithook(_hook)
    return mode
'''

_PYTHON_MAIN = r'''
import sys
_cfg = json.loads(sys.stdin.readline())
with open(_cfg["script"]) as _f:  # read before confining: the namespace may not map our uid
    _src = _f.read()
_mode = _confine(_cfg)
sys.stdout.write("@@sandbox-network " + _mode + "\n"); sys.stdout.flush()
del _cfg
sys.argv = ["main.py"]
exec(compile(_src, "main.py", "exec"), {"__name__": "__main__"})
'''

_COMMAND_MAIN = r'''
_line = b""
while not _line.endswith(b"\n"):  # byte by byte: a buffered read would swallow the program's own input
    _b = os.read(0, 1)
    if not _b:
        break
    _line += _b
_cfg = json.loads(_line)
_mode = _confine(_cfg)
sys.stderr.write("@@sandbox-network " + _mode + "\n"); sys.stderr.flush()
if _mode == "audit-hook":
    sys.stderr.write("@@sandbox-network-unenforced\n"); sys.stderr.flush()
    _mode = "none"  # an external program escapes a Python audit hook: say so, do not pretend
os.execvp(_cfg["argv"][0], _cfg["argv"])
'''


def _read_capped(path: str, limit: int) -> tuple[str, bool]:
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    return data[:limit].decode("utf-8", errors="replace"), len(data) > limit


def _launch(main: str, cfg: dict[str, object], stdin_text: str, workdir: str, limits: SandboxLimits,
            files: Mapping[str, str] | None) -> SandboxResult:
    for name, content in (files or {}).items():
        target = os.path.join(workdir, name)
        if os.path.dirname(os.path.abspath(target)) != os.path.abspath(workdir):
            raise VerifierConfigError(f"sandbox file name {name!r} must be a plain name inside the work directory")
        with open(target, "w") as f:
            f.write(content)
    out_path, err_path = os.path.join(workdir, ".stdout"), os.path.join(workdir, ".stderr")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
    t0 = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-c", CONFINE_SOURCE + main], stdin=subprocess.PIPE, stdout=out, stderr=err,
            cwd=workdir, env=env, start_new_session=True)  # its own process group, killed as a whole
        timed_out = False
        try:
            proc.communicate((json.dumps(cfg) + "\n" + stdin_text).encode("utf-8"), timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        except BrokenPipeError:  # it died before reading its input
            proc.wait()
    seconds = time.monotonic() - t0
    stdout, t1 = _read_capped(out_path, limits.max_output_chars)
    stderr, t2 = _read_capped(err_path, limits.max_output_chars)
    network = "none" if limits.network else "unknown"
    marker = "@@sandbox-network "
    for stream in (stdout, stderr):
        if stream.startswith(marker) or f"\n{marker}" in stream:
            line = stream[stream.index(marker):].split("\n", 1)[0]
            network = line[len(marker):].strip()
    if "@@sandbox-network-unenforced" in stderr:
        network = "none"
    stdout = "\n".join(ln for ln in stdout.split("\n") if not ln.startswith(marker))
    stderr = "\n".join(ln for ln in stderr.split("\n") if not ln.startswith("@@sandbox-network"))
    rc = proc.returncode
    sig = signal.Signals(-rc).name if rc is not None and rc < 0 and -rc in signal.Signals._value2member_map_ else None
    return SandboxResult(rc, stdout, stderr, timed_out, seconds, network, sig, t1 or t2)


def _config(limits: SandboxLimits, **extra: object) -> dict[str, object]:
    return {"network": limits.network, "isolation": limits.isolation, "memory_mb": limits.memory_mb, "cpu_s": limits.cpu_seconds,
            "max_file_mb": limits.max_file_mb, "max_open_files": limits.max_open_files, **extra}


def run_python(code: str, *, stdin: str = "", limits: SandboxLimits | None = None,
               files: Mapping[str, str] | None = None) -> SandboxResult:
    """Run Python source in the sandbox; ``files`` are written into its working directory first.

    >>> run_python("print(open('data.txt').read())", files={"data.txt": "hello"}).stdout.strip()
    'hello'
    """
    limits = limits or SandboxLimits()
    workdir = tempfile.mkdtemp(prefix="lifelong-sandbox-")
    try:
        script = os.path.join(workdir, ".main.py")
        with open(script, "w") as f:
            f.write(code)
        return _launch(_PYTHON_MAIN, _config(limits, script=script), stdin, workdir, limits, files)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_command(argv: Sequence[str], *, stdin: str = "", limits: SandboxLimits | None = None,
                files: Mapping[str, str] | None = None) -> SandboxResult:
    """Run an external program under the same limits. Its network is cut only where the kernel allows
    a network namespace (``result.network == "netns"``); an audit hook cannot reach a non-Python
    program, so there the result says ``"none"``.

    >>> run_command(["echo", "hi"], limits=SandboxLimits(timeout_s=10)).stdout.strip()
    'hi'
    """
    if not argv:
        raise VerifierConfigError("run_command needs a program to run (argv is empty)")
    limits = limits or SandboxLimits()
    workdir = tempfile.mkdtemp(prefix="lifelong-sandbox-")
    try:
        return _launch(_COMMAND_MAIN, _config(limits, argv=list(argv)), stdin, workdir, limits, files)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
