"""Benchmark: our normalisation against the naive chain of separate ffmpeg commands.

Both make the same files from the same 1080p source with the same codec settings: an FFV1 master,
an H.264/AAC access copy, the source's frame hashes and the master's frame hashes. Ours decodes the
source once for the first three (cifa_ingest.normalise.encode); the naive chain decodes it three
times.
Each side runs in a child process of its own, side by side in one run, in rounds, alternating which
goes first, so that each side is the other's reference, measured beside it. The script keeps each
side's best round and prints its spread (benchmarks/reference.py), the wall-time ratio of the best
rounds (ours / naive; the target is at most 0.85 on 2 cores) with the range of the rounds' own
ratios, and each side's peak memory (the Python process's own, and ffmpeg's).

    .venv/bin/python benchmarks/normalise.py [--seconds 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from reference import Timings

REPO = Path(__file__).resolve().parent.parent

OURS = """
import json, resource, sys, time
from pathlib import Path
from cifa_ingest.normalise import encode as normalise
from cifa_ingest.config import NormaliseSettings, Settings, format_policy_path
from cifa_ingest.normalise.format_policy import load_policy
import os
work = Path(sys.argv[2])
(work / "original").mkdir(parents=True)
source = work / "original" / "source.mp4"
os.link(sys.argv[1], source)  # the bag's layout, without copying the bytes
settings = NormaliseSettings(free_space_margin_bytes=0, progress_interval_seconds=3600)
profile = load_policy(format_policy_path(Settings())).profile("default")
started = time.monotonic()
normalise.normalise_group("film", [source], work, work / "proof", settings, profile)
print(json.dumps({"seconds": time.monotonic() - started,
                  "python_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "ffmpeg_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""

NAIVE = """
import json, resource, subprocess, sys, time
from pathlib import Path
from cifa_ingest.normalise.audio import WAVPACK_BLOCK_SAMPLES
from cifa_ingest.normalise.master import ffv1_slices
source, work = sys.argv[1], Path(sys.argv[2])
work.mkdir(parents=True, exist_ok=True)
ff = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
hashes = ["-map", "0:V", "-map", "0:a", "-c:v", "rawvideo", "-pix_fmt", "yuv420p",
          "-c:a", "pcm_f32le", "-filter:a", "asetnsamples=n=1024:p=0",
          "-fps_mode", "passthrough", "-enc_time_base:v", "-1", "-f", "framemd5"]
commands = [
    [*ff, "-i", source, "-map", "0:V", "-map", "0:a", "-c:v", "ffv1", "-level", "3", "-g", "1",
     "-slicecrc", "1", "-slices", str(ffv1_slices(1920, 1080)), "-c:a", "wavpack",
     "-frame_size", str(WAVPACK_BLOCK_SAMPLES), "-fps_mode", "passthrough",
     "-enc_time_base:v", "-1", str(work / "master.mkv")],
    [*ff, "-i", source, "-map", "0:V:0", "-map", "0:a", "-c:v", "libx264", "-preset", "veryfast",
     "-crf", "23", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "160k", "-movflags", "+faststart",
     str(work / "access.mp4")],
    [*ff, "-i", source, *hashes, str(work / "source.framemd5")],
    [*ff, "-i", str(work / "master.mkv"), *hashes, str(work / "master.framemd5")],
]
started = time.monotonic()
for command in commands:
    subprocess.run(command, check=True)
print(json.dumps({"seconds": time.monotonic() - started,
                  "python_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "ffmpeg_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def make_source(path: Path, seconds: float) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
         "-c:a", "aac", str(path)],
        check=True,
    )  # fmt: skip


def run_side(code: str, source: Path, work: Path) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", code, str(source), str(work)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        sys.exit(f"benchmark side failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="length of the 1080p source")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each side")
    args = parser.parse_args()
    sides = {"ours": OURS, "naive chain": NAIVE}
    timings = {side: Timings() for side in sides}
    with tempfile.TemporaryDirectory(prefix="cifa-bench-") as tmp:
        source = Path(tmp) / "source.mp4"
        make_source(source, args.seconds)
        for round_ in range(args.rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for side in order:
                work = Path(tmp) / f"{side.split()[0]}-{round_}"
                timings[side].runs.append(run_side(sides[side], source, work))
    print(
        f"source: 1920x1080, {args.seconds:g} s, H.264/AAC;"
        f" {args.rounds} rounds of each side, alternating which goes first; best round kept"
    )
    for side, timing in timings.items():
        python_mb = timing.peak("python_kb") / 1024
        ffmpeg_mb = timing.peak("ffmpeg_kb") / 1024
        memory = f"peak memory: python {python_mb:.0f} MB, ffmpeg {ffmpeg_mb:.0f} MB"
        print(f"{side:12s} {timing.best:7.1f} s ({timing.spread_text()})   {memory}")
    ours, naive = timings["ours"], timings["naive chain"]
    per_round = [o / n for o, n in zip(ours.seconds, naive.seconds, strict=True)]
    print(
        f"ratio ours/naive: {ours.best / naive.best:.2f} best against best"
        f" (rounds' own ratios {min(per_round):.2f}-{max(per_round):.2f}; target <= 0.85)"
    )


if __name__ == "__main__":
    main()
