#!/usr/bin/env python3
"""Parity of two ``maskwatch predict --jsonl`` outputs (x86 and the emulated arm64 device).

    python3 .ci/arm64_parity.py x86.jsonl arm64.jsonl [--box-px 2] [--what "int8 LiteRT"]

Per image: the same number of faces, each arm64 face matched to the x86 face whose box is nearest,
every box corner within ``--box-px`` pixels and the same label, unless neither machine is sure of
its label (each gives it less than ``--unsure``): a box a fraction of a pixel apart cuts a crop one
pixel apart, and a face on the fence may then fall either way; such faces are named in the line.
Prints one line per image and exits 1 when any image differs (the lines say how). Plain Python 3 (it runs on the host, outside the venvs).
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


def compare(reference: list[dict], other: list[dict], box_px: float,
            unsure: float = 0.0) -> tuple[list[str], float, list[str]]:
    """What differs between two images' detections (empty: the same faces and labels), the largest
    box difference between matched faces, and the faces on the fence whose labels may differ."""
    if len(reference) != len(other):
        return [f"{len(reference)} faces on x86, {len(other)} on arm64"], 0.0, []
    problems, left, worst, fence = [], list(other), 0.0, []
    for face in reference:
        match = min(left, key=lambda o: box_error(face["box"], o["box"]))
        left.remove(match)
        error = box_error(face["box"], match["box"])
        worst = max(worst, error)
        if error > box_px:
            problems.append(f"box {face['box']} vs {match['box']}: {error:.2f} px apart (tolerance {box_px})")
        if face["label"] != match["label"]:
            line = (f"box {face['box']}: {face['label']} {face['label_score']:.2f} on x86, "
                    f"{match['label']} {match['label_score']:.2f} on arm64")
            (fence if max(face["label_score"], match["label_score"]) < unsure else problems).append(line)
    return problems, worst, fence


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="x86 predict JSONL")
    parser.add_argument("other", type=Path, help="arm64 predict JSONL")
    parser.add_argument("--box-px", type=float, default=2.0, help="largest allowed box corner difference (pixels)")
    parser.add_argument("--unsure", type=float, default=0.0,
                        help="a label may differ where both machines give theirs less than this probability")
    parser.add_argument("--what", default="", help="models compared, for the printed lines")
    args = parser.parse_args(argv)
    reference, other = load(args.reference), load(args.other)
    if set(reference) != set(other):
        print(f"parity {args.what}: images differ: x86 {sorted(reference)}, arm64 {sorted(other)}")
        return 1
    failed = 0
    for image in sorted(reference):
        problems, worst, fence = compare(reference[image], other[image], args.box_px, args.unsure)
        status = "DIFFERS: " + "; ".join(problems) if problems else \
            f"same {len(reference[image])} faces and labels (largest box difference {worst:.2f} px)"
        if fence and not problems:
            status += "; on the fence, either label allowed: " + "; ".join(fence)
        print(f"parity {args.what} {image}: {status}")
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
