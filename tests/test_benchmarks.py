"""The benchmark scripts run, on the smallest input, and report what they are for: a ratio, and
the spread of what was measured beside it. Their figures are never asserted (benchmarks report
ratios, they are not timed tests); only that each is printed."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

#: Each script with its smallest options: two rounds, so that a spread is measured.
SMALLEST = {
    "audit.py": ["--scale", "0.001", "--rounds", "2", "--limit-mb", "8"],
    "audit_locations.py": [
        "--objects",
        "200",
        "--scale",
        "0.01",
        "--rounds",
        "2",
        "--limit-mb",
        "8",
    ],
    "bagging.py": ["--scale", "0.001", "--rounds", "2", "--limit-mb", "8"],
    "normalise.py": ["--seconds", "1", "--rounds", "2"],
    "replicate.py": ["--gigabytes", "0.08", "--rounds", "2", "--small", "2"],
    "versions.py": ["--scale", "0.001", "--rounds", "2", "--limit-mb", "8"],
}

#: What each must print: the lines with a ratio, and the lines with a spread.
RATIO = r"ratio [^:]+: (?:bag )?\d+\.\d\d"
SHARE = r"\d+% of the limit"
SPREAD = r"spread \d+% over 2\b"
LIMIT = r"hashing limit: \d+ MB/s, best of \d+ passes .*spread \d+% over \d+"


def test_every_benchmark_script_is_covered() -> None:
    scripts = {p.name for p in (REPO / "benchmarks").glob("*.py")} - {"reference.py"}
    assert scripts == set(SMALLEST)


#: The benchmarks that take longest even on their smallest input (a copy to SeaweedFS,
#: a location audit, an encode): in the slow set, which CI runs too, so that the fast suite keeps
#: its 20 minutes.
SLOWEST = ("audit_locations.py", "normalise.py", "replicate.py")


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(name, marks=pytest.mark.slow) if name in SLOWEST else name
        for name in sorted(SMALLEST)
    ],
)
def test_a_benchmark_runs_on_a_tiny_input_and_prints_its_ratio_and_spread(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *SMALLEST[script]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    ratios = re.findall(RATIO, out)
    timed = [line for line in out.splitlines() if re.search(r"\d s \(" + SPREAD, line)]
    if script == "normalise.py":
        assert len(ratios) == 1 and len(timed) == 2, out  # ours, the naive chain
    elif script == "replicate.py":  # ours, boto3's upload_file; and ours' peak memory
        assert len(ratios) == 1 and len(timed) == 2, out
        assert re.search(r"peak memory of ours: \d+ MB RSS", out), out
    else:
        assert re.search(LIMIT, out), out
        shares = re.findall(SHARE, out)
        if script == "audit.py":
            assert len(ratios) == 1 and len(timed) == len(shares) == 2, out
            assert re.search(r"planning .*: \d+ ms \(spread \d+% over 3", out), out
        elif script == "versions.py":  # version 1 of a placed bag, bagit-python's validation
            assert len(ratios) == 1 and len(timed) == len(shares) == 2, out
        elif script == "audit_locations.py":  # cheap against its target; deep against the bound
            assert len(ratios) == 4 and len(timed) == 5 and len(shares) == 2, out
            assert re.search(r"cheap audit of \d+ objects", out), out
        else:  # two payloads, each bagged and validated by both tools
            assert len(ratios) == 2 and len(timed) == len(shares) == 8, out
