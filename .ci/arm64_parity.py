#!/usr/bin/env python3
"""Parity of two ``maskwatch predict --jsonl`` outputs (x86 and the emulated arm64 device).

    python3 .ci/arm64_parity.py x86.jsonl arm64.jsonl [--box-px 2] [--what "int8 LiteRT"]

Per image: the same number of faces, each arm64 face matched to the x86 face whose box is nearest,
every box corner within ``--box-px`` pixels and the same label. Prints one line per image and exits
1 when any image differs (the lines say how). Plain Python 3 (it runs on the host, outside the venvs).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load(path: Path) -> dict[str, list[dict]]:
    """image name -> its detections, from one predict JSONL file."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["image"]: row["detections"] for row in rows}


def box_error(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b))


def compare(reference: list[dict], other: list[dict], box_px: float) -> tuple[list[str], float]:
    """What differs between two images' detections (empty: the same faces and labels), and the
    largest box difference between matched faces."""
    if len(reference) != len(other):
        return [f"{len(reference)} faces on x86, {len(other)} on arm64"], 0.0
    problems, left, worst = [], list(other), 0.0
    for face in reference:
        match = min(left, key=lambda o: box_error(face["box"], o["box"]))
        left.remove(match)
        error = box_error(face["box"], match["box"])
        worst = max(worst, error)
        if error > box_px:
            problems.append(f"box {face['box']} vs {match['box']}: {error:.2f} px apart (tolerance {box_px})")
        if face["label"] != match["label"]:
            problems.append(f"box {face['box']}: {face['label']} on x86, {match['label']} on arm64")
    return problems, worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="x86 predict JSONL")
    parser.add_argument("other", type=Path, help="arm64 predict JSONL")
    parser.add_argument("--box-px", type=float, default=2.0, help="largest allowed box corner difference (pixels)")
    parser.add_argument("--what", default="", help="models compared, for the printed lines")
    args = parser.parse_args(argv)
    reference, other = load(args.reference), load(args.other)
    if set(reference) != set(other):
        print(f"parity {args.what}: images differ: x86 {sorted(reference)}, arm64 {sorted(other)}")
        return 1
    failed = 0
    for image in sorted(reference):
        problems, worst = compare(reference[image], other[image], args.box_px)
        status = "DIFFERS: " + "; ".join(problems) if problems else \
            f"same {len(reference[image])} faces and labels (largest box difference {worst:.2f} px)"
        print(f"parity {args.what} {image}: {status}")
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
