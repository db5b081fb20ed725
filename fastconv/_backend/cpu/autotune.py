"""Autotuning, the CPU's ``cudnn.benchmark``: the first call of each convolution pass times the
algorithms that can compute it and keeps the fastest for the later calls.

Off by default (the planner's "auto" heuristic runs). ``set_autotune(True)`` or
``FASTCONV_AUTOTUNE=1`` turn it on for the process, ``with autotune():`` for the calling Python
thread. A key is (pass, the planner's Conv: shapes, stride, padding, dilation, groups, dtype;
SIMD level; thread count). Its first call with finite operands runs every candidate on the
call's own arrays into a scratch output, in interleaved rounds (`race`), with the thread count
the call uses, and the winner's result is what the call returns: bitwise what forcing that
algorithm gives (each algorithm is deterministic). Later calls pay one dictionary look-up.
Candidates are the planner's runnable algorithms less those `planner.worth_timing` rules out
(FFT for small kernels: seconds lost, never won).

An optional JSON cache on disk (``set_autotune(True, cache=...)`` or
``FASTCONV_AUTOTUNE_CACHE``) keeps the winners per machine: sections keyed by CPU model, SIMD
level, thread count and fastconv version. Writes merge with what is on disk under a lock file
(other processes may write the same file) and replace it atomically; a file that cannot be read
is ignored with one warning. It stores names and seconds, never code (no pickle).

The winner may differ between machines (and between runs where two algorithms are about as
fast): each algorithm gives the same bits every time, so results differ only where the choice
does.
"""

import contextlib
import json
import math
import os
import platform
import threading
import time
import warnings
from collections import namedtuple
from typing import Dict, Iterator, Optional, Set, Tuple, Union

from ... import _atomic
from ..._version import __version__
from . import planner as _planner
from .threads import get_num_threads

ENV = "FASTCONV_AUTOTUNE"
CACHE_ENV = "FASTCONV_AUTOTUNE_CACHE"
FORMAT = 1  # the cache file's layout version

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def _env_flag():
    value = os.environ.get(ENV, "").strip().lower()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    warnings.warn(
        f"{ENV}={os.environ[ENV]!r} is neither 1/true/yes/on nor 0/false/no/off: autotuning "
        f"stays off",
        RuntimeWarning,
        stacklevel=2,
    )
    return False


_settings_lock = threading.Lock()
_tune_lock = threading.RLock()  # one tuning at a time: two side by side would time each other


class _Local(threading.local):
    # this Python thread's setting inside autotune() (a class default: no AttributeError to
    # raise and catch on every call)
    enabled: Optional[bool] = None


_local = _Local()
_enabled = _env_flag()
_blocks = 0  # autotune(True) blocks open in any thread
# What the kernel ops check first, on every call: false unless the process setting is on or some
# thread is inside an autotune(True) block (then `enabled` says whether this thread tunes).
active = _enabled
_cache_path = os.environ.get(CACHE_ENV) or None

Tuned = namedtuple("Tuned", "algorithm seconds source")
Tuned.__doc__ = """A key's winner, {algorithm: seconds, None where not timed}, and where it came
from: "measured" (in this process) or "cache" (the disk cache)."""

_results: Dict[tuple, Tuned] = {}  # (pass, Conv, level, threads) -> Tuned
# The same winners by the kernel ops' own arguments, (pass, (x, weight, y shapes), (stride,
# padding, dilation, groups), dtype char, level, threads): a tuned call's look-up without
# building the planner's Conv (~0.5 us instead of ~2 us)
_known: Dict[tuple, str] = {}


def _update_active():
    global active
    active = _enabled or _blocks > 0


def get_autotune() -> bool:
    """Whether convolutions called from this Python thread are autotuned (see set_autotune).

    Returns
    -------
    bool: the setting of an enclosing ``autotune()`` block of this thread, else the process
    setting (``set_autotune``; at import ``FASTCONV_AUTOTUNE``), False by default.
    """
    local = _local.enabled
    return _enabled if local is None else local


enabled = get_autotune


def _as_bool(value, name):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return value


def default_cache_path():
    """``$XDG_CACHE_HOME/fastconv/autotune.json``, else ``~/.cache/fastconv/autotune.json``."""
    cache = os.environ.get("XDG_CACHE_HOME")
    root = os.path.expanduser(cache) if cache else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "fastconv", "autotune.json")


def _as_cache(cache):
    if cache is True:
        return default_cache_path()
    if cache is False:
        return None
    try:
        path = os.fspath(cache)
    except TypeError:
        raise TypeError(
            f"cache must be True, False, None or a path, got {type(cache).__name__}"
        ) from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise ValueError("cache must name a file, got an empty path")
    return path


def set_autotune(
    enabled: bool, *, cache: Union[None, bool, str, "os.PathLike[str]"] = None
) -> bool:
    """Turn autotuning of CPU convolutions on or off for the process (the CPU's
    ``torch.backends.cudnn.benchmark``).

    With it on, the first call of each convolution pass (forward, grad-input, grad-weight) of
    given shapes, geometry and dtype at a given thread count times the algorithms that can
    compute it, on the call's own arrays, and it and later calls run the fastest. The result of
    a call is bitwise what forcing that algorithm (``algorithm=``) gives. ``conv2d_plan`` shows
    the choices and the times. The choice may differ between machines.

    Parameters
    ----------
    enabled : bool
        True: tune; False: the planner's "auto" heuristic (the default; also at import unless
        ``FASTCONV_AUTOTUNE=1``).
    cache : None, bool, str or path-like, optional
        The disk cache of the choices: None keeps the current one (at import
        ``FASTCONV_AUTOTUNE_CACHE``, else none); False: none; True: the default file
        (``$XDG_CACHE_HOME/fastconv/autotune.json`` or ``~/.cache/fastconv/autotune.json``);
        a path: that JSON file (created with its directory when needed).

    Returns
    -------
    bool: the previous process setting.
    """
    global _enabled, _cache_path
    enabled = _as_bool(enabled, "enabled")
    path = _cache_path if cache is None else _as_cache(cache)
    with _settings_lock:
        previous = _enabled
        _enabled, _cache_path = enabled, path
        _update_active()
    return previous


def cache_path() -> Optional[str]:
    """The disk cache's file, or None when there is none."""
    return _cache_path


@contextlib.contextmanager
def autotune(enabled: bool = True) -> Iterator[None]:
    """Within the block, CPU convolutions called from this Python thread are autotuned (or,
    with ``enabled=False``, not); other threads and the process setting are unaffected.

    Parameters
    ----------
    enabled : bool, default True
        As for set_autotune (the disk cache is the process's).
    """
    global _blocks
    enabled = _as_bool(enabled, "enabled")
    previous = _local.enabled
    _local.enabled = enabled
    with _settings_lock:
        _blocks += enabled
        _update_active()
    try:
        yield
    finally:
        _local.enabled = previous
        with _settings_lock:
            _blocks -= enabled
            _update_active()


def forget():
    """Drop the winners measured or read so far in this process (the disk cache stays)."""
    with _tune_lock:
        _results.clear()
        _known.clear()


def known(call_key):
    """The winner already known for `call_key` (see _known) when this thread tunes, else None."""
    return _known.get(call_key) if get_autotune() else None


# ------------------------------------------------------------------------ measuring
# How a key's candidates are raced (benchmarks/bench_autotune.py measured the cost and the
# choices): each candidate runs once untimed first (a first call's costs: page faults of its
# workspaces, glibc's malloc threshold, FFT plans); round 0 then times each once; after round
# r the candidates further than
# _KEEP[min(r, 2)] x the best time so far drop out (after round 0 only if a second round of
# all would not fit the budget below: one run may have been slowed down several times by
# another process); a candidate's time is the least of its runs (other processes only add
# time). Rounds stop when one candidate is left, after
# _ROUNDS rounds, or when the next round would take the rounds after round 0 past _EXTRA x the
# best time, or _EXTRA_FLOOR seconds if more: small convolutions get more rounds, where a
# scheduler tick of another process weighs most. At _EXTRA = 4 a pass of 5-10 ms got two timed
# runs per candidate, and in one of two runs of the suite noise picked the stride-2 3x3's
# direct forward, 1.18x GEMM's time (results/autotune_s4_extra4_2threads_run2.log); at 8 tuning the
# suite cost 2.3-2.4 s against 1.6-1.8 s and every pick was the best algorithm.
_KEEP = (3.0, 1.3, 1.1)
_ROUNDS = 8
_EXTRA = 8.0
_EXTRA_FLOOR = 0.02
# The heuristic's choice is kept unless another candidate is more than 5% faster: where two
# algorithms are within noise of each other the choice stays put (a quiet machine measured
# the depthwise 3x3 grad-weight of benchmarks/bench_conv.py's suite 3.6% slower than GEMM
# while tuning and 10% faster afterwards).
_MARGIN = 0.95


def _measure(run, name):
    """Seconds one run(name) takes (wall clock: what the caller waits for); inf when it runs out
    of memory (it drops out of the race; were it the only one, the call itself raises)."""
    t0 = time.perf_counter()
    try:
        run(name)
    except MemoryError:
        return math.inf
    return time.perf_counter() - t0


def race(candidates, run, measure):
    """Time `candidates` (names; the first is the heuristic's choice) by measure(run, name) in
    interleaved rounds, after one untimed run each; return (winner, {name: seconds}, the name
    run last).

    In each round the current leader runs last, so that, when it wins, the scratch output holds
    its result."""
    heuristic = candidates[0]
    best = {}
    extra = 0.0  # seconds spent after round 0
    last = None
    for name in candidates:  # untimed: the first call's costs
        if math.isinf(measure(run, name)):
            best[name] = math.inf  # out of memory: out of the race
    contenders = [c for c in candidates if c not in best]
    if not contenders:  # the call itself will raise
        return heuristic, best, last
    for r in range(_ROUNDS):
        # round 0: the heuristic last; later: slowest first, the leader last
        order = (
            contenders[1:] + contenders[:1]
            if r == 0
            else sorted(contenders, key=lambda c: -best[c])
        )
        for name in order:
            t = measure(run, name)
            extra += t if r > 0 else 0.0
            best[name] = min(best.get(name, math.inf), t)
            last = name
        fastest = min(best[c] for c in contenders)
        budget = max(_EXTRA * fastest, _EXTRA_FLOOR)
        if r > 0 or extra + sum(best[c] for c in contenders) > budget:
            contenders = [c for c in contenders if best[c] <= _KEEP[min(r, 2)] * fastest]
        if len(contenders) == 1:
            break
        if extra + sum(best[c] for c in contenders) > budget:
            break
    winner = min(contenders, key=lambda c: best[c])
    if heuristic in contenders and best[winner] > _MARGIN * best[heuristic]:
        winner = heuristic
    return winner, best, last


def candidates(pass_, conv, level):
    """What autotuning times for `pass_` of `conv`: the heuristic's choice first, then the other
    runnable algorithms worth timing (planner.worth_timing)."""
    heuristic = _planner.choose(pass_, conv, level)
    others = [
        a
        for a in _planner.runnable(pass_, conv, level)
        if a != heuristic and _planner.worth_timing(a, pass_, conv)
    ]
    return [heuristic] + others


def tune(pass_, conv, level, run, out):
    """Race the candidates of `pass_` of `conv`, each computing into a scratch copy of `out`
    (run(name, target)); return (Tuned, written): written when `out` now holds the winner's
    result."""
    import numpy as np

    names = candidates(pass_, conv, level)
    scratch = np.empty_like(out)
    scratch.fill(0)  # every page touched now, not in a candidate's time
    winner, best, last = race(names, lambda name: run(name, scratch), _measure)
    written = last == winner
    if written:
        np.copyto(out, scratch)
    seconds = {a: best.get(a) for a in _planner.runnable(pass_, conv, level)}
    seconds = {a: None if t is None or math.isinf(t) else t for a, t in seconds.items()}
    return Tuned(winner, seconds, "measured"), written


def lookup(pass_, conv, level):
    """The winner known for this key (measured or read from the disk cache), else None."""
    key = (pass_, conv, level, get_num_threads())
    found = _results.get(key)
    if found is None and _cache_path is not None:
        with _tune_lock:
            found = _results.get(key)
            if found is None:
                found = _read_entry(_cache_path, pass_, conv, level, key[3])
                if found is not None:
                    _results[key] = found
    return found


def pick(pass_, conv, level, run, out, finite, call_key=None):
    """(algorithm, written): the algorithm autotuning keeps for `pass_` of `conv` at this thread
    count ("auto" where this thread does not tune, or where the operands hold inf or NaN and
    nothing is known yet: measured on finite data only), tuned now if it is new; written when
    the tuning left the winner's result in `out`. run(name, target) computes the pass by `name`
    into `target`; finite() says whether the operands are finite; `call_key` (see _known)
    remembers the answer for `known`."""
    if not get_autotune():
        return "auto", False
    found = lookup(pass_, conv, level)
    if found is not None:
        if call_key is not None:
            _known[call_key] = found.algorithm
        return found.algorithm, False
    with _tune_lock:
        key = (pass_, conv, level, get_num_threads())
        found = _results.get(key)
        if found is not None:
            return found.algorithm, False
        if not finite():
            return "auto", False
        found, written = tune(pass_, conv, level, run, out)
        _results[key] = found
        if call_key is not None:
            _known[call_key] = found.algorithm
        if _cache_path is not None:
            _write_entry(_cache_path, pass_, conv, level, key[3], found)
    return found.algorithm, written


# ------------------------------------------------------------------------ the disk cache
def cpu_model():
    """The CPU's model name (/proc/cpuinfo; else what the platform module says)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def section(level, threads):
    """The cache section of this machine: CPU model, SIMD level, thread count, fastconv version."""
    return f"cpu={cpu_model()}; simd={level}; threads={threads}; fastconv={__version__}"


def entry(pass_, conv):
    """The cache key of `pass_` of `conv` inside a section."""
    return (
        f"{pass_} x={list(conv.x_shape)} w={list(conv.w_shape)} y={list(conv.y_shape)} "
        f"stride={list(conv.stride)} padding={list(conv.padding)} "
        f"dilation={list(conv.dilation)} groups={conv.groups} {conv.dtype.name}"
    )


_warned: Set[Tuple[str, str]] = set()  # (path, why) already warned about


def _warn_once(path, why):
    if (path, why) not in _warned:
        _warned.add((path, why))
        warnings.warn(f"fastconv autotune cache {path}: {why}", RuntimeWarning, stacklevel=4)


def _load(path):
    """The cache file's data ({} when it is missing; ignored with a warning when damaged)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        _warn_once(path, f"cannot be read ({type(exc).__name__}: {exc}); ignored")
        return {}
    if (
        not isinstance(data, dict)
        or data.get("fastconv_autotune") != FORMAT
        or not isinstance(data.get("machines"), dict)
        or not all(isinstance(s, dict) for s in data["machines"].values())
    ):
        _warn_once(path, "is not a fastconv autotune cache (format 1); ignored")
        return {}
    return data


def _read_entry(path, pass_, conv, level, threads):
    """The Tuned of this key in the cache file, or None (absent, or not a valid choice here)."""
    found = _load(path).get("machines", {}).get(section(level, threads), {}).get(entry(pass_, conv))
    if not isinstance(found, dict):
        return None
    algorithm, seconds = found.get("algorithm"), found.get("seconds")
    runnable = _planner.runnable(pass_, conv, level)
    if algorithm not in runnable or not isinstance(seconds, dict):
        return None
    times = {}
    for a in runnable:
        t = seconds.get(a)
        times[a] = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None
    return Tuned(algorithm, times, "cache")


@contextlib.contextmanager
def _locked(path):
    """An exclusive lock on ``path + ".lock"`` between processes (POSIX flock; elsewhere none:
    the atomic replace still keeps the file whole, a concurrent update may be lost)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _write_entry(path, pass_, conv, level, threads, tuned):
    """Add this key's winner to the cache file: under the lock, re-read what other processes
    wrote, merge, replace the file atomically. A failure to write warns once and is otherwise
    ignored (the winner stays known in this process)."""
    record = {"algorithm": tuned.algorithm, "seconds": tuned.seconds}
    try:
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        with _locked(path):
            data = _load(path) or {"fastconv_autotune": FORMAT, "machines": {}}
            machines = data["machines"]
            machines.setdefault(section(level, threads), {})[entry(pass_, conv)] = record
            with _atomic.atomic_write(path, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, sort_keys=True)
    except OSError as exc:
        _warn_once(path, f"cannot be written ({type(exc).__name__}: {exc}); not cached")
