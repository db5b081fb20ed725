"""Print a bench_conv.py JSON record as the Markdown table benchmarks/README.md shows.

python benchmarks/markdown_table.py benchmarks/results/conv_cpu_2threads.json
"""

import argparse
import json


def _ms(record, phase, impl):
    entry = record[phase].get(impl)
    return f"{entry['median_ms']:.3g}" if entry else "-"


def _ratio(record, phase, key):
    value = record["ratios"][phase].get(key)
    return f"{value:.2f}" if value is not None else "-"


def table(data):
    """The Markdown lines: one row per case, then the geometric means."""
    lines = [
        "| case | shape | algorithm (fwd / grad-in / grad-w) | fwd fastconv | fwd torch | fwd numpy "
        "| fwd ft/torch | bwd fastconv | bwd torch | bwd numpy | bwd ft/torch |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rec in data["cases"]:
        name = rec["name"] + (" (f64)" if rec["dtype"] == "float64" else "")
        plan = rec.get("plan") or {}
        algorithms = " / ".join(plan.get(p, "-") for p in ("forward", "grad_input", "grad_weight"))
        cells = [name, f"`{rec['spec']}`", algorithms]
        for phase in ("fwd", "bwd"):
            cells += [_ms(rec, phase, impl) for impl in ("fastconv", "torch", "numpy")]
            cells.append(_ratio(rec, phase, "fastconv/torch"))
        lines.append("| " + " | ".join(cells) + " |")
    geo = data["geomeans"]
    lines.append("")
    for phase, label in (("fwd", "forward"), ("bwd", "backward")):
        torch = geo[phase].get("fastconv/torch", {})
        numpy = geo[phase].get("numpy/fastconv", {})
        # a column left out (--impls) leaves its geometric mean None
        torch_mean = torch.get("geomean") if torch.get("geomean") is not None else float("nan")
        numpy_mean = numpy.get("geomean") if numpy.get("geomean") is not None else float("nan")
        lines.append(
            f"Geometric mean, {label}: fastconv/torch time {torch_mean:.3f} "
            f"({torch.get('cases', 0)} cases); numpy/fastconv {numpy_mean:.2f} "
            f"({numpy.get('cases', 0)} cases)."
        )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="a file written by bench_conv.py --json")
    args = parser.parse_args(argv)
    with open(args.json) as f:
        print("\n".join(table(json.load(f))))


if __name__ == "__main__":
    main()
