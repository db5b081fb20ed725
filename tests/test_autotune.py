"""Autotuning (fastconv.set_autotune): what it chooses, that the choice computes exactly what
forcing it does, the plan's report, the disk cache. Times are faked where a choice is checked:
no test depends on how fast anything runs."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest

import fastconv
from fastconv._backend.cpu import autotune as at
from fastconv._backend.cpu import planner

PASSES = ("forward", "grad_input", "grad_weight")
# 3x3 with 16 channels: gemm, direct, winograd and fft all run the forward pass
X_SHAPE, W_SHAPE = (2, 16, 12, 12), (16, 16, 3, 3)


@pytest.fixture(autouse=True)
def clean_state(monkeypatch):
    """Each test starts with autotuning off, no cache and nothing tuned, and leaves it so."""
    monkeypatch.setattr(at, "_enabled", False)
    monkeypatch.setattr(at, "_cache_path", None)
    monkeypatch.setattr(at, "_blocks", 0)
    monkeypatch.setattr(at, "active", False)
    monkeypatch.setattr(at, "_warned", set())
    at.forget()
    yield
    at.forget()


def fake_times(costs, calls=None):
    """A measure() for autotune.race: runs the candidate (the arrays are written as in a real
    tuning) and says it took costs[name] seconds (default 1)."""

    def measure(run, name):
        run(name)
        if calls is not None:
            calls.append(name)
        return costs.get(name, 1.0)

    return measure


def data(rng, dtype=np.float32, x_shape=X_SHAPE, w_shape=W_SHAPE, padding=1):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    y_shape = fastconv.conv_output_shape(x_shape, w_shape, padding=padding)
    g = rng.standard_normal(y_shape).astype(dtype)
    return x, w, rng.standard_normal(w_shape[0]).astype(dtype), g


def run_pass(pass_, x, w, b, g, algorithm="auto", padding=1):
    if pass_ == "forward":
        return fastconv.conv2d(x, w, b, padding=padding, activation="relu", algorithm=algorithm)
    if pass_ == "grad_input":
        return fastconv.conv2d_grad_input(g, w, x.shape, padding=padding, algorithm=algorithm)
    return fastconv.conv2d_grad_weight(g, x, w.shape, padding=padding, algorithm=algorithm)


# ------------------------------------------------------------------------- the choice logic
def test_race_picks_the_fastest_and_drops_the_slow():
    calls = []
    costs = {"gemm": 1.6, "direct": 0.5, "winograd": 0.55, "fft": 10.0}
    names = ["gemm", "direct", "winograd", "fft"]
    winner, best, last = at.race(names, lambda name: None, fake_times(costs, calls))
    assert winner == "direct" and best == costs
    assert calls[:4] == names  # one untimed run each
    assert calls[4:8] == ["direct", "winograd", "fft", "gemm"]  # round 0: the heuristic last
    timed = calls[4:]
    assert timed.count("fft") == 1 and timed.count("gemm") == 1  # > 3x the best: dropped
    assert timed.count("direct") == timed.count("winograd") >= 2
    assert timed[4:6] == ["winograd", "direct"] and last == "direct"  # the leader runs last


def test_race_keeps_the_heuristic_within_the_margin():
    costs = {"gemm": 1.0, "direct": 0.96}
    assert at.race(["gemm", "direct"], lambda n: None, fake_times(costs))[0] == "gemm"
    costs = {"gemm": 1.0, "direct": 0.9}
    assert at.race(["gemm", "direct"], lambda n: None, fake_times(costs))[0] == "direct"
    costs = {"gemm": 1.0, "direct": 0.96, "fft": 0.9}  # not the heuristic: the fastest
    assert at.race(["direct", "gemm", "fft"], lambda n: None, fake_times(costs))[0] == "fft"


def test_race_stays_within_its_budget():
    """Rounds after the first stop before they cost more than _EXTRA x the best time (or
    _EXTRA_FLOOR seconds: more rounds for small convolutions), and after _ROUNDS."""
    for n in range(1, 8):
        calls = []
        at.race([str(i) for i in range(n)], lambda name: None, fake_times({}, calls))
        timed = len(calls) - n  # less the untimed first runs
        assert timed - n <= at._EXTRA
        assert (timed == n) == (n == 1 or n > at._EXTRA)  # one round only when no more fits
    calls = []
    tiny = at._EXTRA_FLOOR / 100
    at.race(["a", "b"], lambda name: None, fake_times({"a": tiny, "b": tiny}, calls))
    assert len(calls) == 2 + 2 * at._ROUNDS


def test_race_times_cheap_candidates_twice_before_dropping_them():
    """A first timed run slowed down 8x (another process) does not drop a candidate when a
    second round of all fits the budget."""
    runs = {"gemm": [9, 2.8, 2.8, 2.8], "direct": [9, 2.0, 2.0, 2.0], "winograd": [9, 9, 1, 1]}

    def measure(run, name):
        return runs[name].pop(0) * at._EXTRA_FLOOR / 20

    winner, best, _ = at.race(["direct", "gemm", "winograd"], lambda n: None, measure)
    assert winner == "winograd"


def test_race_uses_the_least_of_the_runs():
    runs = {"gemm": [0.5, 3.0, 1.0, 1.0], "direct": [0.5, 1.2, 1.2, 1.2]}

    def measure(run, name):
        return runs[name].pop(0)

    winner, best, _ = at.race(["gemm", "direct"], lambda n: None, measure)
    assert winner == "gemm" and best == {"gemm": 1.0, "direct": 1.2}  # the untimed 0.5 aside


def test_race_without_memory_for_any_candidate_names_the_heuristic():
    winner, best, last = at.race(["gemm", "fft"], lambda n: None, lambda run, n: float("inf"))
    assert winner == "gemm" and last is None


def test_fft_is_not_timed_on_small_kernels():
    conv = planner.Conv(X_SHAPE, W_SHAPE, (2, 16, 12, 12), (1, 1), (1, 1), (1, 1), 1, np.float32)
    level = fastconv._kernels.direct.level()
    assert "fft" in planner.runnable("forward", conv, level)
    assert "fft" not in at.candidates("forward", conv, level)
    big = conv._replace(w_shape=(16, 16, 5, 5), y_shape=(2, 16, 12, 12), padding=(2, 2))
    assert "fft" in at.candidates("forward", big, level)
    assert at.candidates("forward", conv, level)[0] == planner.choose("forward", conv, level)


# ------------------------------------------------------------------------- on real calls
def _conv(dtype=np.float32):
    return planner.Conv(
        X_SHAPE, W_SHAPE, (2, 16, 12, 12), (1, 1), (1, 1), (1, 1), 1, np.dtype(dtype)
    )


LEVEL = fastconv._kernels.direct.level()


# (x shape, weight shape, padding): a 3x3 (gemm, direct, winograd) and an 11x11 (gemm,
# direct, fft) convolution
GEOMETRIES = [(X_SHAPE, W_SHAPE, 1), ((2, 4, 24, 24), (4, 4, 11, 11), 5)]


@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=["3x3", "11x11"])
def test_each_winner_computes_what_forcing_it_computes(geometry, pass_, dtype, rng, monkeypatch):
    """Whichever candidate is the fastest, the call returns bitwise what forcing it returns,
    on the tuning call and after, and the plan names it."""
    x_shape, w_shape, padding = geometry
    x, w, b, g = data(rng, dtype, x_shape, w_shape, padding)
    conv = planner.Conv(x_shape, w_shape, g.shape, (1, 1), (padding,) * 2, (1, 1), 1, x.dtype)
    names = at.candidates(pass_, conv, LEVEL)
    assert len(names) >= 2
    for fastest in names:
        at.forget()
        monkeypatch.setattr(at, "_measure", fake_times({fastest: 0.1}))
        with fastconv.autotune():
            got = run_pass(pass_, x, w, b, g, padding=padding)
            plan = fastconv.conv2d_plan(x_shape, w_shape, padding=padding, dtype=dtype)
            again = run_pass(pass_, x, w, b, g, padding=padding)
        assert plan[pass_] == fastest and plan.sources[pass_] == "autotune"
        forced = run_pass(pass_, x, w, b, g, algorithm=fastest, padding=padding)
        np.testing.assert_array_equal(got, forced)
        np.testing.assert_array_equal(again, forced)
    assert ("fft" in names) == (w_shape[2] == 11)


def test_a_winner_that_did_not_run_last_is_run_again(rng, monkeypatch):
    """The scratch output holds the last candidate's result: when the leader changed in the
    last round, the winner computes the output anew."""
    x, w, b, g = data(rng)
    names = at.candidates("forward", _conv(), LEVEL)
    script = {names[0]: [1, 1.1, 0.5, 0.5, 0.5], names[1]: [1, 1.0, 1.0, 1.0, 1.0]}
    calls = []

    def measure(run, name):
        run(name)
        calls.append(name)
        return script.get(name, [9.0] * 5)[sum(c == name for c in calls) - 1]

    monkeypatch.setattr(at, "_measure", measure)
    with fastconv.autotune():
        got = run_pass("forward", x, w, b, g)
    assert calls[-1] == names[1] and at.lookup("forward", _conv(), LEVEL).algorithm == names[0]
    np.testing.assert_array_equal(got, run_pass("forward", x, w, b, g, algorithm=names[0]))


def test_real_timing_chooses_a_runnable_algorithm_deterministically(rng):
    x, w, b, g = data(rng)
    with fastconv.autotune():
        first = [run_pass(p, x, w, b, g) for p in PASSES]
        plan = fastconv.conv2d_plan(X_SHAPE, W_SHAPE, padding=1)
        second = [run_pass(p, x, w, b, g) for p in PASSES]
    can = fastconv.conv2d_algorithms(X_SHAPE, W_SHAPE, padding=1)
    for p, a, b_ in zip(PASSES, first, second):
        assert plan[p] in can[p] and plan.sources[p] == "autotune"
        np.testing.assert_array_equal(a, b_)
        np.testing.assert_array_equal(a, run_pass(p, x, w, b, g, algorithm=plan[p]))
        times = plan.seconds[p]
        assert set(times) == set(can[p])
        assert times[plan[p]] > 0
        assert times["fft"] is None  # 3x3: not timed
        assert all(t is None or t > 0 for t in times.values())
    assert "autotune:" in str(plan) and "ms" in str(plan)


@pytest.mark.parametrize("pass_", PASSES)
def test_operands_holding_inf_are_not_tuned_on(pass_, rng):
    x, w, b, g = data(rng, np.float64)
    x[0, 1, 2, 3] = np.inf
    g[1, 0, 0, 0] = np.nan
    expected = run_pass(pass_, x, w, b, g)
    with fastconv.autotune(), np.errstate(invalid="ignore"):
        got = run_pass(pass_, x, w, b, g)
    np.testing.assert_array_equal(got, expected)
    assert at.lookup(pass_, _conv(np.float64), LEVEL) is None


def test_off_by_default_and_switches(rng):
    x, w, b, g = data(rng)
    assert fastconv.get_autotune() is False
    run_pass("forward", x, w, b, g)
    assert at.lookup("forward", _conv(), LEVEL) is None
    assert fastconv.conv2d_plan(X_SHAPE, W_SHAPE, padding=1).sources == dict.fromkeys(
        PASSES, "heuristic"
    )
    assert fastconv.set_autotune(True) is False
    try:
        assert fastconv.get_autotune() is True
        with fastconv.autotune(False):
            assert fastconv.get_autotune() is False
            run_pass("forward", x, w, b, g)
            assert at.lookup("forward", _conv(), LEVEL) is None
        run_pass("forward", x, w, b, g)
        assert at.lookup("forward", _conv(), LEVEL) is not None
    finally:
        assert fastconv.set_autotune(False) is True
    assert at.active is False


def test_autotune_block_is_per_thread():
    seen = []
    with fastconv.autotune():
        worker = threading.Thread(target=lambda: seen.append(fastconv.get_autotune()))
        worker.start()
        worker.join()
        assert fastconv.get_autotune() is True
    assert seen == [False] and fastconv.get_autotune() is False


def test_settings_are_checked():
    for bad in ("yes", 1, None):
        with pytest.raises(TypeError, match=r"\benabled\b"):
            fastconv.set_autotune(bad)
        with pytest.raises(TypeError, match=r"\benabled\b"):
            with fastconv.autotune(bad):
                pass
    with pytest.raises(TypeError, match=r"\bcache\b"):
        fastconv.set_autotune(True, cache=3)
    with pytest.raises(ValueError, match=r"\bcache\b"):
        fastconv.set_autotune(True, cache="")
    assert fastconv.get_autotune() is False and at.cache_path() is None


def test_one_tuning_per_key_across_threads(rng, monkeypatch):
    x, w, b, g = data(rng)
    calls = []
    monkeypatch.setattr(at, "_measure", fake_times({}, calls))
    results = [None] * 4

    def work(i):
        with fastconv.autotune():
            results[i] = run_pass("grad_input", x, w, b, g)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    one_tuning = len(calls)
    at.forget()
    calls.clear()
    with fastconv.autotune():
        run_pass("grad_input", x, w, b, g)
    assert one_tuning == len(calls) > 0
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_key_includes_the_thread_count(rng, tmp_path, monkeypatch):
    x, w, b, g = data(rng)
    monkeypatch.setattr(at, "_measure", fake_times({}))
    path = tmp_path / "tune.json"
    previous = fastconv.get_num_threads()
    try:
        with fastconv.autotune():
            fastconv.set_autotune(False, cache=path)
            for n in (1, 2):
                fastconv.set_num_threads(n)
                run_pass("forward", x, w, b, g)
                assert at.lookup("forward", _conv(), LEVEL) is not None
    finally:
        fastconv.set_num_threads(previous)
    keys = [k for k in at._results if k[0] == "forward"]
    assert sorted(k[3] for k in keys) == [1, 2]
    sections = json.loads(path.read_text())["machines"]
    assert sorted(s.split("threads=")[1].split(";")[0] for s in sections) == ["1", "2"]
    assert all(at.entry("forward", _conv()) in s for s in sections.values())


# ------------------------------------------------------------------------- the plan
def test_plan_shows_the_fusions():
    direct = fastconv._kernels.direct.level() > 0
    lenet = fastconv.conv2d_plan((64, 6, 14, 14), (16, 6, 5, 5))
    assert lenet.fusions == {"grad_weight_bias": direct, "forward_grad_weight": False}
    forced = fastconv.conv2d_plan((64, 6, 14, 14), (16, 6, 5, 5), algorithm="gemm")
    assert forced.fusions == {"grad_weight_bias": False, "forward_grad_weight": False}
    assert forced.sources == dict.fromkeys(PASSES, "forced")
    wide = fastconv.conv2d_plan((8, 256, 14, 14), (256, 256, 3, 3), stride=2, padding=1)
    assert wide.fusions == {"grad_weight_bias": False, "forward_grad_weight": True}
    assert wide == {"forward": "gemm", "grad_input": "gemm", "grad_weight": "gemm"}
    assert "fused: forward + grad_weight" in str(wide)
    assert "not fused: grad_weight + grad_bias" in str(wide)
    assert repr(wide).startswith("ConvPlan({'forward': 'gemm'")
    assert fastconv.conv2d_plan((0, 6, 14, 14), (16, 6, 5, 5)).fusions == dict.fromkeys(
        ("grad_weight_bias", "forward_grad_weight"), False
    )


def test_tuned_fusions_compute_what_the_plan_says(rng, monkeypatch, assert_close):
    """conv2d_backward's grad-weight + grad-bias and the transposed convolution's two
    gradients follow the tuned choices."""
    x, w, b, g = data(rng)
    for winner in ("direct", "gemm"):
        at.forget()
        monkeypatch.setattr(at, "_measure", fake_times({winner: 0.1}))
        with fastconv.autotune():
            gx, gw, gb = fastconv.conv2d_backward(g, x, w, padding=1)
            plan = fastconv.conv2d_plan(X_SHAPE, W_SHAPE, padding=1)
        assert plan["grad_weight"] == winner
        assert plan.fusions["grad_weight_bias"] == (winner == "direct")
        np.testing.assert_array_equal(
            gw, fastconv.conv2d_grad_weight(g, x, w.shape, padding=1, algorithm=winner)
        )
        assert_close(gb, g.sum(axis=(0, 2, 3)), np.float32, g.size // 16)
        assert plan.fusions["forward_grad_weight"] == (winner == plan["forward"] == "gemm")
    # the transposed convolution of x's adjoint: its gradients are this forward and grad-weight
    at.forget()
    monkeypatch.setattr(at, "_measure", fake_times({"gemm": 0.1}))
    with fastconv.autotune():
        plan = fastconv.conv2d_plan(X_SHAPE, W_SHAPE, padding=1)
        tx = rng.standard_normal((2, 16, 12, 12)).astype(np.float32)
        tw = w.transpose(1, 0, 2, 3).copy()  # conv_transpose2d's weight (C_in, C_out, KH, KW)
        ty = fastconv.conv_transpose2d(tx, tw, padding=1)
        tgx, tgw, _ = fastconv.conv_transpose2d_backward(np.ones_like(ty), tx, tw, padding=1)
    assert plan.fusions["forward_grad_weight"] is True
    expected = fastconv.conv_transpose2d_backward(np.ones_like(ty), tx, tw, padding=1)
    assert_close(tgx, expected[0], np.float32, 144)
    assert_close(tgw, expected[1], np.float32, 288)


# ------------------------------------------------------------------------- the disk cache
def _run_python(code, tmp_path, **env):
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("FASTCONV_AUTOTUNE")} | env,
    )
    assert result.returncode == 0, result.stderr
    return result


TUNE_AND_SHOW = """
    import fastconv
    from fastconv._backend.cpu import autotune
    if {forbid_measuring}:
        def refuse(run, name):
            raise AssertionError("measured " + name)
        autotune._measure = refuse
    fastconv.set_num_threads(1)
    plan = fastconv.conv2d_plan({x}, {w}, padding=1)
    print(fastconv.get_autotune(), *plan.sources.values(), *plan.values(), sep="|")
"""


def test_environment_switches_it_on(tmp_path):
    code = TUNE_AND_SHOW.format(forbid_measuring=False, x=X_SHAPE, w=W_SHAPE)
    assert _run_python(code, tmp_path).stdout.split("|")[:2] == ["False", "heuristic"]
    on = _run_python(code, tmp_path, FASTCONV_AUTOTUNE="1").stdout.split("|")
    assert on[:4] == ["True", "autotune", "autotune", "autotune"]
    odd = _run_python(code, tmp_path, FASTCONV_AUTOTUNE="maybe")
    assert odd.stdout.split("|")[0] == "False" and "FASTCONV_AUTOTUNE='maybe'" in odd.stderr


def test_cache_is_written_and_read_by_a_fresh_process(tmp_path):
    path = tmp_path / "sub" / "tune.json"
    env = dict(FASTCONV_AUTOTUNE="1", FASTCONV_AUTOTUNE_CACHE=str(path))
    first = _run_python(
        TUNE_AND_SHOW.format(forbid_measuring=False, x=X_SHAPE, w=W_SHAPE), tmp_path, **env
    )
    data = json.loads(path.read_text())
    assert data["fastconv_autotune"] == 1
    (section,) = data["machines"]
    assert "threads=1;" in section and f"fastconv={fastconv.__version__}" in section
    assert len(data["machines"][section]) == 3
    assert sorted(os.listdir(path.parent)) == ["tune.json", "tune.json.lock"]  # no temp files
    second = _run_python(
        TUNE_AND_SHOW.format(forbid_measuring=True, x=X_SHAPE, w=W_SHAPE), tmp_path, **env
    )
    assert second.stdout.split("|")[1:4] == ["autotune cache"] * 3
    assert second.stdout.split("|")[4:] == first.stdout.split("|")[4:]


def test_concurrent_processes_keep_every_entry(tmp_path):
    path = tmp_path / "tune.json"
    code = """
        import fastconv
        fastconv.set_num_threads(1)
        for hw in range({start}, {start} + 12):
            fastconv.conv2d_plan((1, 4, hw, hw), (4, 4, 3, 3), padding=1)
    """
    env = os.environ | dict(FASTCONV_AUTOTUNE="1", FASTCONV_AUTOTUNE_CACHE=str(path))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code.format(start=start))],
            cwd=tmp_path,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for start in (8, 20)
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
        p.stderr.close()
    (entries,) = json.loads(path.read_text())["machines"].values()
    assert len(entries) == 2 * 12 * 3


@pytest.mark.parametrize(
    "damage, why",
    [
        ("{not json", "cannot be read"),
        ('["a list"]', "not a fastconv autotune cache"),
        ('{"fastconv_autotune": 99, "machines": {}}', "not a fastconv autotune cache"),
        (b"\xff\xfe\x00", "cannot be read"),
    ],
)
def test_damaged_cache_warns_once_and_is_replaced(damage, why, tmp_path, rng, monkeypatch):
    path = tmp_path / "tune.json"
    (path.write_bytes if isinstance(damage, bytes) else path.write_text)(damage)
    monkeypatch.setattr(at, "_measure", fake_times({}))
    x, w, b, g = data(rng)
    fastconv.set_autotune(False, cache=path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with fastconv.autotune():
            y = run_pass("forward", x, w, b, g)
            run_pass("grad_input", x, w, b, g)
    messages = [str(c.message) for c in caught]
    assert len(messages) == 1 and why in messages[0] and str(path) in messages[0]
    assert len(messages[0].splitlines()) == 1
    np.testing.assert_array_equal(y, run_pass("forward", x, w, b, g, algorithm="auto"))
    (entries,) = json.loads(path.read_text())["machines"].values()
    assert len(entries) == 2


def test_cache_entries_that_cannot_run_are_ignored(tmp_path, rng, monkeypatch):
    path = tmp_path / "tune.json"
    x, w, b, g = data(rng)
    section = at.section(LEVEL, fastconv.get_num_threads())
    bad = {
        at.entry("forward", _conv()): {"algorithm": "depthwise", "seconds": {}},
        at.entry("grad_input", _conv()): {"algorithm": "gemm", "seconds": {"gemm": "fast"}},
    }
    path.write_text(json.dumps({"fastconv_autotune": 1, "machines": {section: bad}}))
    monkeypatch.setattr(at, "_measure", fake_times({}))
    fastconv.set_autotune(False, cache=path)
    with fastconv.autotune():
        plan = fastconv.conv2d_plan(X_SHAPE, W_SHAPE, padding=1)
    assert plan.sources["forward"] == "autotune"  # re-measured
    assert plan.sources["grad_input"] == "autotune cache" and plan["grad_input"] == "gemm"
    assert plan.seconds["grad_input"]["gemm"] is None  # "fast" is no time


def test_a_candidate_out_of_memory_drops_out(rng, monkeypatch):
    x, w, b, g = data(rng)
    names = at.candidates("forward", _conv(), LEVEL)

    def run(name, target):
        if name == names[0]:
            raise MemoryError
        target[...] = 0

    assert at._measure(lambda name: run(name, None), names[0]) == float("inf")
    tuned, written = at.tune("forward", _conv(), LEVEL, run, np.empty((2, 16, 12, 12), np.float32))
    assert tuned.algorithm != names[0] and tuned.seconds[names[0]] is None


@pytest.mark.parametrize("value, on", [("1", True), (" ON ", True), ("yes", True), ("0", False)])
def test_environment_values(value, on, monkeypatch):
    monkeypatch.setenv("FASTCONV_AUTOTUNE", value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert at._env_flag() is on
    monkeypatch.setenv("FASTCONV_AUTOTUNE", "off")
    assert at._env_flag() is False


def test_tuned_calls_look_the_winner_up_by_their_arguments(rng, monkeypatch):
    x, w, b, g = data(rng)
    calls = []
    monkeypatch.setattr(at, "_measure", fake_times({}, calls))
    with fastconv.autotune():
        run_pass("forward", x, w, b, g)
        tuned = len(calls)
        (key,) = at._known
        assert key[0] == "forward" and at.known(key) == at.lookup("forward", _conv(), LEVEL)[0]
        with fastconv.autotune(False):
            assert at.known(key) is None  # this thread does not tune: the heuristic
        run_pass("forward", x, w, b, g)
    assert len(calls) == tuned > 0
    at.forget()
    assert at._known == {} and at._results == {}
