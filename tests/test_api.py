"""The public API stays as it is: every public name of fastconv and its public subpackages,
with its signature (classes: their public methods'), equals the recorded tests/public_api.json."""

import json
import os

from api_snapshot import snapshot


def test_public_names_and_signatures_are_unchanged():
    with open(os.path.join(os.path.dirname(__file__), "public_api.json")) as f:
        recorded = json.load(f)
    now = json.loads(json.dumps(snapshot()))
    for module in recorded:
        assert module in now, f"{module} is gone"
        missing = sorted(set(recorded[module]) - set(now[module]))
        assert not missing, f"{module} lost {missing}"
        changed = {
            n: (recorded[module][n], now[module][n])
            for n in recorded[module]
            if recorded[module][n] != now[module][n]
        }
        assert not changed, f"{module}: signatures changed: {changed}"
