"""Sphinx directive ``benchmark-table``: a table of a recorded benchmark run, read from its JSON
record in ``benchmarks/results/`` when the docs are built, with the machine it ran on.

::

    .. benchmark-table:: conv_cpu_2threads.json
       :kind: conv

Kinds: ``conv`` (``bench_conv.py --json``), ``toolkit`` (``bench_toolkit.py``), ``fft``
(``bench_fft.py``), ``lenet`` (``bench_lenet.py``), ``dask`` (``bench_dask.py``). The text
under the table names the CPU, the threads, the library versions, the date and the file, so a
reader never has to guess where a number came from.
"""

import json
import re
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def _ms(value):
    return f"{value:.3g}" if value is not None else "-"


def _median(record, phase, impl):
    entry = record.get(phase, {}).get(impl)
    return entry["median_ms"] if entry else None


def _list_table(header, rows, widths=None):
    """reStructuredText lines of a list-table."""
    lines = [".. list-table::", "   :header-rows: 1", ""]
    if widths:
        lines[1:1] = [f"   :widths: {' '.join(map(str, widths))}"]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return lines + [""]


def _cpu_from_config(text):
    match = re.search(r"^\s*CPU: (.+)$", text or "", re.M)
    return match.group(1) if match else "not recorded"


def _conv(data):
    rows = []
    for rec in data["cases"]:
        plan = rec.get("plan") or {}
        algorithms = " / ".join(plan.get(p, "-") for p in ("forward", "grad_input", "grad_weight"))
        name = rec["name"] + (" (f64)" if rec["dtype"] == "float64" else "")
        row = [name, f"``{rec['spec']}``", algorithms]
        for phase in ("fwd", "bwd"):
            row += [_ms(_median(rec, phase, impl)) for impl in ("fastconv", "torch", "numpy")]
            ratio = rec["ratios"][phase].get("fastconv/torch")
            row.append(f"{ratio:.2f}" if ratio is not None else "-")
        rows.append(row)
    header = [
        "case",
        "shape",
        "algorithm (fwd / grad-in / grad-w)",
        "fwd fastconv",
        "fwd torch",
        "fwd numpy",
        "fwd ft/torch",
        "bwd fastconv",
        "bwd torch",
        "bwd numpy",
        "bwd ft/torch",
    ]
    if not any(rec.get("plan") for rec in data["cases"]):  # older records: no plan column
        header.pop(2)
        rows = [row[:2] + row[3:] for row in rows]
    lines = _list_table(header, rows)
    geo = data["geomeans"]
    for phase, label in (("fwd", "forward"), ("bwd", "backward")):
        torch = geo[phase].get("fastconv/torch", {})
        numpy = geo[phase].get("numpy/fastconv", {})
        if torch:
            lines.append(
                f"Geometric mean, {label}: fastconv/torch time {torch['geomean']:.3f} "
                f"({torch['cases']} cases); numpy/fastconv {numpy.get('geomean', float('nan')):.2f}."
            )
            lines.append("")
    env = data["environment"]
    config = data["config"]
    machine = (
        f"**{env['cpu']}**, {env.get('logical_cpus', '?')} logical CPUs; {config['threads']} "
        f"threads for every column; torch {env.get('torch') or 'absent'}, NumPy {env['numpy']}, "
        f"SciPy {env.get('scipy', '?')}, fastconv {env['fastconv']}; medians of "
        f"{config['reps']} interleaved reps (NumPy baseline: {config['numpy_reps']}), ms per "
        f"call; run {env['date']}"
    )
    return lines, machine


def _toolkit(data):
    rows = []
    for rec in data["cases"]:
        for phase, label in (("fwd", "forward"), ("bwd", "backward")):
            ratio = rec["ratios"][phase].get("fastconv/torch")
            rows.append(
                [
                    rec["name"] if phase == "fwd" else "",
                    f"``{rec['spec']}``" if phase == "fwd" else "",
                    label,
                    _ms(_median(rec, phase, "fastconv")),
                    _ms(_median(rec, phase, "torch")),
                    f"{ratio:.2f}" if ratio is not None else "-",
                ]
            )
    header = ["case", "shape", "pass", "fastconv (ms)", "torch (ms)", "ft/torch"]
    env = data["env"]
    machine = (
        f"**{env['cpu']}**; {env['threads']} thread(s); timed by {env['clock']}; torch "
        f"{env.get('torch') or 'absent'}, NumPy {env['numpy']}; medians; run {env['date']}"
    )
    return _list_table(header, rows), machine


def _fft(data):
    impls = (
        ("fft", "fastconv (FFT)"),
        ("current", "fastconv im2col + GEMM"),
        ("fftconv", "scipy.signal.fftconvolve"),
        ("oaconv", "scipy.signal.oaconvolve"),
        ("torch", "torch"),
    )
    rows = []
    for rec in data["cases"]:
        row = [f"``{rec['spec']}``"]
        for key, _ in impls:
            row.append(f"{_ms(_median(rec, 'fwd', key))} / {_ms(_median(rec, 'bwd', key))}")
        rows.append(row)
    header = ["case (forward / backward, ms)"] + [label for _, label in impls]
    env = data["environment"]
    machine = (
        f"**{env['cpu']}**; {env['threads']} threads; torch {env.get('torch') or 'absent'}, "
        f"NumPy {env['numpy']}, SciPy {env.get('scipy', '?')}; medians; run {env['date']} "
        f"while other work loaded the machine (load average {env['load_before'][0]:.1f} "
        f"before): read the ratios"
    )
    return _list_table(header, rows), machine


def _lenet(data):
    res = data["results"]
    header = ["implementation", "s per 60,000-image epoch (median)", "best", "images/s"]
    rows = [
        [
            impl,
            f"{res[impl]['seconds_per_60k_epoch']:.2f}",
            f"{res[impl]['best_seconds_per_60k_epoch']:.2f}",
            f"{res[impl]['images_per_second']:,.0f}",
        ]
        for impl in ("fastconv", "torch")
        if impl in res
    ]
    env = data["environment"]
    cfg = data["config"]
    machine = (
        f"**{_cpu_from_config(env.get('fastconv_config'))}**; {cfg['threads']} threads; batch "
        f"{cfg['batch_size']}, {cfg['optimizer']}, {cfg['reps']} alternating reps; torch "
        f"{env.get('torch') or 'absent'}, NumPy {env['numpy']}; fastconv / torch time "
        f"{res['fastconv_over_torch']:.3f}; run {data['time']}"
    )
    return _list_table(header, rows), machine


def _dask(data):
    stack = data["stack"]
    shape = "x".join(map(str, stack["shape"]))
    header = ["case", "one process", "LocalCluster, 1 worker", "LocalCluster, 2 workers"]
    rows = [
        [
            f"``{shape}`` .npy stack ({stack['gib']} GiB, {stack['block_mib']:.0f} MiB "
            f"blocks), 3x3 'same', written back",
            f"{stack['one_process_s']:.2f} s",
            f"{stack['dask_1w_s']:.2f} s (peak {stack['dask_1w_peak_mib_per_worker']:.0f} MiB)",
            f"{stack['dask_2w_s']:.2f} s (peak {stack['dask_2w_peak_mib_per_worker']:.0f} "
            f"MiB per worker)",
        ]
    ]
    lines = _list_table(header, rows)
    image_rows = [
        [
            f"{rec['case']}, {rec['chunks']}x{rec['chunks']} tiles",
            f"{rec['fastconv_s']:.2f}",
            f"{rec['dask_image_s']:.2f}",
        ]
        for rec in data["image"]
    ]
    lines += _list_table(
        ["one image (threaded scheduler)", "fastconv (s)", "dask_image.ndfilters.correlate (s)"],
        image_rows,
    )
    meta = data["meta"]
    machine = (
        f"**{meta['cpu']}**, {meta['cores']} cores; fastconv threads {meta['fastconv_threads']}; "
        f"Dask {meta['dask']}; medians of 3; run {meta['date']}"
    )
    return lines, machine


KINDS = {"conv": _conv, "toolkit": _toolkit, "fft": _fft, "lenet": _lenet, "dask": _dask}


class BenchmarkTable(Directive):
    required_arguments = 1
    option_spec = {"kind": lambda arg: directives.choice(arg, tuple(KINDS))}
    has_content = False

    def run(self):
        name = self.arguments[0]
        path = RESULTS / name
        env = self.state.document.settings.env
        env.note_dependency(str(path))
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise self.error(f"benchmark-table: cannot read {path}: {exc}") from exc
        lines, machine = KINDS[self.options.get("kind", "conv")](data)
        lines += [f"Machine and settings: {machine}. Source: ``benchmarks/results/{name}``.", ""]
        container = nodes.container(classes=["benchmark-table"])
        self.state.nested_parse(StringList(lines, source=str(path)), self.content_offset, container)
        return [container]


def setup(app):
    app.add_directive("benchmark-table", BenchmarkTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
