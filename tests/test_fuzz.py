"""The project's fuzzer (tests/fuzz.py) under hypothesis, bounded for CI.

FASTCONV_FUZZ=long runs 10,000 examples per property instead of 100 (a developer's run, about
half an hour on 2 cores); `python tests/fuzz.py --cases 10000` is the same with crashes isolated
in child processes.
"""

import os
import subprocess
import sys

import fuzz
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

settings.register_profile(
    "fuzz-ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz-long", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
FUZZ = settings.get_profile("fuzz-long" if os.environ.get("FASTCONV_FUZZ") == "long" else "fuzz-ci")
SEEDS = st.integers(0, 2**32 - 1)


@FUZZ
@given(SEEDS)
def test_valid_conv_matches_reference(seed):
    fuzz.check_valid_conv(seed)


@FUZZ
@given(SEEDS)
def test_valid_pool_matches_reference(seed):
    fuzz.check_valid_pool(seed)


@FUZZ
@given(SEEDS)
def test_invalid_call_names_its_argument(seed):
    fuzz.check_invalid(seed)


@FUZZ
@given(SEEDS)
def test_every_algorithm_forced_at_a_random_simd_level(seed):
    fuzz.check_forced_algorithms(seed)


@FUZZ
@given(SEEDS)
def test_conv_transpose_matches_reference(seed):
    fuzz.check_conv_transpose(seed)


@FUZZ
@given(SEEDS)
def test_conv1d_matches_reference(seed):
    fuzz.check_conv1d(seed)


@FUZZ
@given(SEEDS)
def test_dask_chunkings_equal_in_memory(seed):
    pytest.importorskip("dask.array")
    fuzz.check_dask(seed)


@FUZZ
@given(SEEDS)
def test_elementwise_any_shape(seed):
    fuzz.check_elementwise(seed)


def test_runner_isolates_crashes_and_reports():
    run = subprocess.run(
        [sys.executable, fuzz.__file__, "--cases", "120", "--chunk", "60", "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "fuzz: 120 passed, 0 failed" in run.stdout, run.stdout[-3000:]
    assert "crashes: 0" in run.stdout


def test_runner_reports_a_crash_as_failure():
    env = dict(os.environ, FASTCONV_FUZZ_SELFTEST_CRASH="3")
    run = subprocess.run(
        [sys.executable, fuzz.__file__, "--cases", "8", "--chunk", "4"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 1
    assert "CRASH in seeds 0..3" in run.stdout and "crashes: 1" in run.stdout
    assert "fuzz: 7 passed, 1 failed" in run.stdout  # seeds 0-2 and 4-7 ran, 3 crashed
