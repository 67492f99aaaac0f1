"""The fork server process: preload, then fork one child per request until the executor goes away.

Messages are JSON over a ``SOCK_SEQPACKET`` Unix socket (one message per packet). Requests, each with
three file descriptors (the child's stdin, stdout, stderr):

- ``{"op": "fork", "id", "cwd", "env"[, "handlers", "handlers_seconds"]}``: the child runs the executor
  child's ``main()``; first, the server imports the modules of the ``python`` handlers listed (each
  once, at most ``handlers_seconds`` each), replying ``{"op": "preloaded", "handler", "error"}`` for each;
- ``{"op": "exec", "id", "cwd", "env", "argv", "rlimits"}``: the command ``argv`` (looked up on the
  ``PATH`` of ``env``) runs under ``rlimits`` (a plan of :mod:`automation_executor.rlimits`). This is
  what the *command server* (started with ``--no-child``: nothing preloaded, ~12 MiB) does for jobs
  whose steps are all commands. Started with ``--hold-limits=<plan as JSON>`` (the replica's limits),
  the server first sets on itself every limit of that plan it can live under
  (:func:`automation_executor.rlimits.holdable`: core dumps, open files, file size, and the address
  space when it is far above the server's size; never CPU seconds), soft and hard. A command inherits
  its parent's limits, so a command whose limits the server holds already is started with
  ``posix_spawn`` alone: no copy of this process and a single ``exec`` (~0.6 ms of CPU per ``true``).
  Limits the server does not hold (:func:`automation_executor.rlimits.unmet`) are set where
  util-linux's ``prlimit`` is installed by starting the command under it (``posix_spawn`` of
  ``prlimit``, which then executes the command: ~1.3 ms); otherwise (or with ``--fork-commands``,
  always) a forked child applies the limits and executes it (~2 ms), reporting a failed ``exec``
  through a close-on-exec pipe, as :mod:`subprocess` does. Every way, a missing program is a
  ``failed`` reply with its ``errno`` and ``filename``, not a child that exits 127.

Replies: ``{"op": "ready", "pid", "held"}`` once after preloading (``held``: the limits the server
set on itself, a plan), ``{"op": "started", "id", "pid"}`` or
``{"op": "failed", "id", "error"[, "errno", "filename"]}`` per request, and ``{"op": "exited", "pid",
"returncode"}`` when a child ends (``returncode`` as in :mod:`subprocess`: negative for a signal). This
module imports only the standard library at the top, so the process is light until it preloads.

Copy-on-write: the server runs with the garbage collector off and moves every object it has into the
permanent generation (``gc.freeze()``) before each fork; the child turns the collector back on. So a
child's collections never write to the preloaded objects' pages, and fewer pages are copied per run
(the pattern the :mod:`gc` documentation gives for servers that fork without exec).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import importlib
import json
import os
import resource
import selectors
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from automation_executor import rlimits
from automation_executor.rlimits import Plan, apply_plan, holdable, unmet

CHILD_ENTRY = "automation_executor.child.main"
HANDLERS_MODULE = "automation_executor.child.python_step"
"""Where ``preload_handler(handler)`` comes from, for a fork request's ``handlers``."""
PRELOAD_SECONDS = 5.0
"""How long a handler's import may take in the server when the request does not say."""
MAX_MESSAGE = 1 << 20
EXIT_CHILD_CRASHED = 70
EXIT_EXEC_FAILED = 127
SERVER_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT)
"""Signals the server handles or ignores; every child gets them back at their defaults."""
EXEC_SIGNALS = (*SERVER_SIGNALS, signal.SIGPIPE, signal.SIGXFSZ)
"""Also reset before a command's ``exec``: Python ignores SIGPIPE and SIGXFSZ, and an ignored signal
stays ignored across ``exec`` (the executor child keeps them ignored, as any Python program does)."""
PREPARE_HOOK = "prepare_fork"
NO_CHILD = "--no-child"
FORK_COMMANDS = "--fork-commands"
HOLD_LIMITS = "--hold-limits="
PRLIMIT_OPTIONS = {
    "RLIMIT_AS": "as",
    "RLIMIT_CORE": "core",
    "RLIMIT_CPU": "cpu",
    "RLIMIT_FSIZE": "fsize",
    "RLIMIT_NOFILE": "nofile",
}
"""The ``prlimit`` (util-linux) option of each limit the executor sets."""


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    """One reply packet (blocking)."""
    sock.sendall(json.dumps(message).encode())


class ImportTooSlow(Exception):
    """A handler's or step runner's import took longer than the fork request allowed (raised by SIGALRM)."""


def _too_slow(*_: object) -> None:
    raise ImportTooSlow("the import took too long in the fork server")


STEP_RUNNERS_PACKAGE = "automation_executor.child."
"""The only package whose modules a fork request's ``modules`` may name (the step runners)."""


def import_step_runner(name: str) -> str | None:
    """Import a step runner's module and call its ``prepare_fork()``; the error (never raised) when that fails."""
    if not name.startswith(STEP_RUNNERS_PACKAGE):
        return f"not a step runner module: {name}"
    try:
        prepare = getattr(importlib.import_module(name), PREPARE_HOOK, None)
        if callable(prepare):
            prepare()
    except BaseException as exc:  # noqa: BLE001 - whatever the module's import does, the fork server goes on
        return f"{type(exc).__name__}: {exc}"
    return None


def preload(modules: Sequence[str]) -> None:
    """Import the child's entry point (required, unless the first name is ``--no-child``: the command
    server, which only executes commands) and the other modules (best effort).

    A preloaded module with a ``prepare_fork()`` function gets it called once, here: work done there
    (e.g. reading the python step's entry points) is inherited by every child instead of redone. The
    child's entry point is prepared last: its warm-up run uses what the others prepared.
    """
    if modules[:1] == [NO_CHILD]:
        modules = modules[1:]
    else:
        importlib.import_module(CHILD_ENTRY)
        modules = [*(name for name in modules if name != CHILD_ENTRY), CHILD_ENTRY]  # its warm-up run last
    for name in modules:
        try:
            module = importlib.import_module(name)
            prepare = getattr(module, PREPARE_HOOK, None)
            if callable(prepare):
                prepare()
        except Exception as exc:  # noqa: BLE001 - an optional module missing only costs its import later
            print(f"forkserver: cannot preload {name}: {exc!r}", file=sys.stderr, flush=True)


def _become(request: dict[str, Any], fds: Sequence[int], signals: Sequence[int], keep: int | None = None) -> None:
    """In a forked child: a new session, ``signals`` at their defaults, the three descriptors, the working
    directory. Every other descriptor is closed but ``keep``.
    """
    os.setsid()
    signal.set_wakeup_fd(-1)
    for number in signals:
        signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    top = os.sysconf("SC_OPEN_MAX")
    if keep is None:
        os.closerange(3, top)
    else:
        os.closerange(3, keep)
        os.closerange(keep + 1, top)
    os.chdir(request["cwd"])


def run_child(request: dict[str, Any], fds: Sequence[int]) -> NoReturn:
    """In the forked child: become the execution's process (never returns)."""
    # Imported here, so the command server never imports them (it stays ~12 MiB).
    import tempfile
    import traceback

    code = EXIT_CHILD_CRASHED
    try:
        gc.enable()
        _become(request, fds, SERVER_SIGNALS)
        os.environ.clear()
        os.environ.update(request["env"])
        tempfile.tempdir = None  # TMPDIR is the execution's own now
        entry = importlib.import_module(CHILD_ENTRY)
        code = int(entry.main())
    except BaseException:  # noqa: BLE001 - whatever happens, the child must end here, never return to the loop
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    os._exit(code)


def exec_child(request: dict[str, Any], fds: Sequence[int], report: int) -> NoReturn:
    """In the forked child: apply the limits and execute the command (never returns).

    If that fails, ``errno``, the file name at fault and the error go to ``report`` (close-on-exec: a
    successful ``exec`` closes it with nothing written) and the child exits 127. As with
    :mod:`subprocess`, a program not found on the ``PATH`` is named as the step gave it.
    """
    filename: str | None = request.get("cwd")
    try:
        _become(request, fds, EXEC_SIGNALS, keep=report)
        filename = None
        apply_plan(request.get("rlimits") or ())
        argv = [str(arg) for arg in request["argv"]]
        filename = argv[0]
        os.execvpe(argv[0], argv, {str(k): str(v) for k, v in request["env"].items()})  # noqa: S606 - argv, no shell
    except BaseException as exc:  # noqa: BLE001 - whatever happens, the child must end here
        number = exc.errno if isinstance(exc, OSError) and exc.errno else errno.EINVAL
        error = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        detail = json.dumps({"errno": number, "filename": filename, "error": error})
        with contextlib.suppress(OSError):
            os.write(report, detail.encode()[:4096])
    os._exit(EXIT_EXEC_FAILED)


def _candidates(program: str, path: str) -> list[str]:
    """Where ``execvp`` looks for ``program``: itself when it has a ``/``, else each folder of ``path``."""
    if "/" in program:
        return [program]
    return [os.path.join(folder or ".", program) for folder in path.split(os.pathsep)]


def find_program(name: str, path: str) -> str | None:
    """The first executable file ``name`` on ``path`` (``os.pathsep``-separated), as ``execvp`` finds it."""
    for candidate in _candidates(name, path):
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def lookup_error(program: str, env: dict[str, str]) -> OSError | None:
    """The error ``execvpe(program, …, env)`` would fail with for want of the file (None: it is there).

    Names with a ``/`` are looked up from the current directory, others on the ``PATH`` of ``env``:
    ENOENT when no candidate exists, EACCES when one exists but cannot be executed.
    """
    if find_program(program, env.get("PATH", os.defpath)) is not None:
        return None
    denied = any(os.path.exists(c) for c in _candidates(program, env.get("PATH", os.defpath)))
    number = errno.EACCES if denied else errno.ENOENT
    return OSError(number, os.strerror(number), program)


def prlimit_options(plan: Sequence[Sequence[Any]]) -> list[str] | None:
    """``prlimit`` options setting ``plan`` the way :func:`automation_executor.rlimits.lower` would (never
    above this process's hard limits); None for a limit ``prlimit`` has no option for."""
    options = []
    for name, wanted_soft, wanted_hard in plan:
        if name not in PRLIMIT_OPTIONS or not hasattr(resource, name):
            return None
        soft, hard = (
            "unlimited" if value == resource.RLIM_INFINITY else str(value)
            for value in rlimits.target(getattr(resource, name), int(wanted_soft), int(wanted_hard))
        )
        options.append(f"--{PRLIMIT_OPTIONS[name]}={soft}:{hard}")
    return options


def address_space_in_use() -> int | None:
    """This process's virtual memory size in bytes (``VmSize``; None where ``/proc`` does not say)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def hold_limits(plan: Sequence[Sequence[Any]]) -> Plan:
    """Set on this process every limit of ``plan`` it can live under (:func:`automation_executor.rlimits.holdable`);
    what was set."""
    held = holdable([(str(name), int(soft), int(hard)) for name, soft, hard in plan], address_space_in_use())
    apply_plan(held)
    return held


def _read_report(fd: int) -> bytes:
    """What an ``exec`` child wrote before its ``exec`` (nothing once it succeeded)."""
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_request(data: bytes, fds: Sequence[int]) -> dict[str, Any] | None:
    try:
        request = json.loads(data)
    except ValueError:
        return None
    if not isinstance(request, dict) or len(fds) != 3:
        return None
    if request.get("op") == "fork":
        return request
    if request.get("op") == "exec" and isinstance(request.get("argv"), list) and request["argv"]:
        return request
    return None


def _preload_handler(handler: str) -> str | None:
    """Import a declared ``python`` handler's module (``python_step.preload_handler``); the error or None."""
    error: str | None = importlib.import_module(HANDLERS_MODULE).preload_handler(handler)
    return error


def _within(seconds: float, load: Callable[[str], str | None], name: str) -> str | None:
    """``load(name)`` interrupted by SIGALRM after ``seconds`` (its error then says so)."""
    previous = signal.signal(signal.SIGALRM, _too_slow)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return load(name)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Zygote:
    """The serving loop: fork on request, reap children, stop with the executor."""

    def __init__(self, sock: socket.socket, *, fork_commands: bool = False, held: Plan | None = None) -> None:
        self.sock = sock
        self.home = os.getcwd()
        self.fork_commands = fork_commands
        """Every command from a forked child that sets its limits (``--fork-commands``: to measure that way)."""
        self.prlimit = None if fork_commands else find_program("prlimit", os.environ.get("PATH", os.defpath))
        """util-linux's ``prlimit``: commands are then spawned without a fork of this process (:meth:`_spawn`)."""
        self.held: Plan = list(held or ())
        """The limits this process set on itself at start (``--hold-limits``), which every command inherits."""
        self.children: set[int] = set()
        self.handlers: set[str] = set()
        """The ``python`` handlers whose modules were asked for (see :meth:`_preload`)."""
        self.modules: set[str] = set()
        """The step runner modules asked for (see :meth:`_preload`)."""
        self.stopping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    def serve(self) -> int:
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        send(self.sock, {"op": "ready", "pid": os.getpid(), "held": self.held})
        try:
            while not self.stopping:
                for key, _ in selector.select():
                    if key.fileobj is self.sock:
                        self._on_request()
                    else:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_r, 4096)
                    self._reap()
        finally:
            self._kill_all()
        return 0

    def _on_term(self, *_: object) -> None:
        self.stopping = True

    def _on_request(self) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, 3)
        except ConnectionResetError:
            data, fds = b"", []
        if not data:  # the executor is gone
            self.stopping = True
            return
        for fd in fds:  # received without close-on-exec: no command may inherit them but as 0, 1, 2
            os.set_inheritable(fd, False)
        request = _parse_request(data, fds)
        if request is None:
            send(self.sock, {"op": "failed", "id": None, "error": f"not a fork request: {data[:200]!r}"})
            for fd in fds:
                os.close(fd)
            return
        ident = request.get("id")
        try:
            if request["op"] == "exec":
                reply = self._exec(request, fds)
            else:
                self._preload(request)
                gc.freeze()  # everything so far is shared with the child and never scanned by its collector
                pid = os.fork()
                if pid == 0:
                    run_child(request, fds)
                self.children.add(pid)
                reply = {"op": "started", "id": ident, "pid": pid}
        except Exception as exc:  # noqa: BLE001 - a bad request fails alone; the server goes on
            reply = {"op": "failed", "id": ident, "error": repr(exc)}
        finally:
            for fd in fds:
                os.close(fd)
        send(self.sock, reply)

    def _preload(self, request: dict[str, Any]) -> None:
        """Import what the request names before the fork, so this child and the next ones find it loaded
        instead of importing it each: the modules of declared ``python`` handlers (``handlers``) and step
        runner modules (``modules``, e.g. the ssh steps'), each once. Each one is reported.

        An import may take ``handlers_seconds`` at most: SIGALRM then interrupts it, and it is reported
        not preloaded (its children import it each), so a module that hangs at import in this
        environment cannot hold up the forks.
        """
        seconds = request.get("handlers_seconds")
        limit = float(seconds) if isinstance(seconds, int | float) and seconds > 0 else PRELOAD_SECONDS
        kinds = (
            ("handlers", "handler", self.handlers, _preload_handler),
            ("modules", "module", self.modules, import_step_runner),
        )
        for field, kind, asked, load in kinds:
            names = request.get(field)
            for name in names if isinstance(names, list) else ():
                if isinstance(name, str) and name not in asked:
                    asked.add(name)
                    send(self.sock, {"op": "preloaded", kind: name, "error": _within(limit, load, name)})

    def _exec(self, request: dict[str, Any], fds: Sequence[int]) -> dict[str, Any]:
        """Start the request's command; the reply once its ``exec`` is done (or failed).

        The limits this process has already (it holds the replica's: see the module) the command
        inherits; only the others (``unmet``) need ``prlimit`` or a forked child to set them.
        """
        if self.fork_commands:
            return self._fork_exec(request, fds)
        try:
            missing = unmet((str(name), int(soft), int(hard)) for name, soft, hard in request.get("rlimits") or ())
        except (TypeError, ValueError) as exc:  # as a forked child reports a plan it cannot apply
            return {"op": "failed", "id": request.get("id"), "errno": errno.EINVAL, "filename": None, "error": str(exc)}
        if not missing:
            return self._spawn(request, fds, None)
        options = prlimit_options(missing) if self.prlimit is not None else None
        if options is None:
            return self._fork_exec(request, fds)
        return self._spawn(request, fds, options)

    def _spawn(self, request: dict[str, Any], fds: Sequence[int], options: list[str] | None) -> dict[str, Any]:
        """Start the command with ``posix_spawn`` (no copy of this process): itself when ``options`` is
        None (it inherits every limit it needs from this process), else under ``prlimit`` with them.

        The command's directory is entered here for the spawn (this process is single-threaded) and
        left again; the program is looked up first, so a missing one is a ``failed`` reply as from
        :meth:`_fork_exec`.
        """
        ident = request.get("id")
        argv = [str(arg) for arg in request["argv"]]
        env = {str(k): str(v) for k, v in request["env"].items()}
        cwd = str(request["cwd"])
        try:
            os.chdir(cwd)
        except OSError as exc:
            return {"op": "failed", "id": ident, "errno": exc.errno, "filename": cwd, "error": exc.strerror}
        try:
            program = find_program(argv[0], env.get("PATH", os.defpath))
            if program is None:
                problem = lookup_error(argv[0], env) or OSError(errno.ENOENT, os.strerror(errno.ENOENT))
                return {
                    "op": "failed",
                    "id": ident,
                    "errno": problem.errno,
                    "filename": argv[0],
                    "error": problem.strerror,
                }
            if options is not None:
                assert self.prlimit is not None
                program, argv = self.prlimit, ["prlimit", *options, "--", *argv]
            pid = os.posix_spawn(
                program,
                argv,
                env,
                file_actions=[(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)],
                setsid=True,
                setsigdef=EXEC_SIGNALS,
                setsigmask=(),
            )
        except OSError as exc:
            return {"op": "failed", "id": ident, "errno": exc.errno, "filename": exc.filename, "error": exc.strerror}
        finally:
            os.chdir(self.home)
        self.children.add(pid)
        return {"op": "started", "id": ident, "pid": pid}

    def _fork_exec(self, request: dict[str, Any], fds: Sequence[int]) -> dict[str, Any]:
        """Fork a child that applies the limits and executes the command; the reply once its ``exec`` is done."""
        ident = request.get("id")
        report_r, report_w = os.pipe()  # close-on-exec, both ends
        try:
            pid = os.fork()
            if pid == 0:
                exec_child(request, fds, report_w)
            os.close(report_w)
            report_w = -1
            self.children.add(pid)  # reaped (and reported) either way; nobody waits for a failed one
            failure = _read_report(report_r)
        finally:
            os.close(report_r)
            if report_w >= 0:
                os.close(report_w)
        if not failure:
            return {"op": "started", "id": ident, "pid": pid}
        try:
            detail = json.loads(failure)
        except ValueError:
            detail = {"error": failure.decode(errors="replace")}
        return {"op": "failed", "id": ident, **detail}

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            with contextlib.suppress(OSError):
                send(self.sock, {"op": "exited", "pid": pid, "returncode": os.waitstatus_to_exitcode(status)})

    def _kill_all(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def main(argv: Sequence[str]) -> int:
    """``<socket fd> [--no-child] [--fork-commands] [--hold-limits=<plan>] [module ...]``: preload, hold
    the limits, report ready, serve until the executor goes away."""
    if not argv:
        print(
            "usage: python -m automation_executor.forkserver <socket fd> [--no-child] [--fork-commands]"
            " [--hold-limits=<plan as JSON>] [module ...]",
            file=sys.stderr,
        )
        return 2
    gc.disable()  # no collection may leave holes in (or touch the headers of) the pages children share
    sock = socket.socket(fileno=int(argv[0]))
    sock.set_inheritable(False)
    modules = list(argv[1:])
    fork_commands = FORK_COMMANDS in modules
    if fork_commands:
        modules.remove(FORK_COMMANDS)
    holds = [name for name in modules if name.startswith(HOLD_LIMITS)]
    modules = [name for name in modules if not name.startswith(HOLD_LIMITS)]
    try:
        preload(modules)
    except Exception as exc:  # noqa: BLE001 - reported to the executor, which falls back to spawning
        send(sock, {"op": "failed", "id": None, "error": f"cannot preload the child: {exc!r}"})
        return 1
    try:  # after preloading: the address space held must leave room above what the server has become
        held = hold_limits(json.loads(holds[-1].removeprefix(HOLD_LIMITS))) if holds else []
    except Exception as exc:  # noqa: BLE001 - reported to the executor, which falls back to children
        send(sock, {"op": "failed", "id": None, "error": f"cannot hold the limits {holds[-1]!r}: {exc!r}"})
        return 1
    return Zygote(sock, fork_commands=fork_commands, held=held).serve()
