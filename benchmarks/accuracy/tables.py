"""Markdown tables of the figures that :mod:`.scoring` and :mod:`.metrics` compute."""
from __future__ import annotations

from maskwatch.edge.labels import CLASSES


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def table(results: dict) -> str:
    """Markdown for the CLI: the result of :func:`evaluate_detections` or of :func:`evaluate_crops`."""
    if "all" in results:
        sections = [("all", "all faces"), ("ignore_small", f"faces < {results['small_face_px']:g} px ignored")]
        rows = [(f"AP@{results['iou_threshold']:g} {label}", lambda s, c=label: _fmt(s["ap"][c])) for label in CLASSES]
        rows += [
            ("mAP (3 classes)", lambda s: _fmt(s["map_3class"])),
            ("mAP (with/without mask)", lambda s: _fmt(s["map_2class"])),
            ("face AP (any label)", lambda s: _fmt(s["face_ap"])),
            ("face recall", lambda s: _fmt(s["face_recall"])),
            ("faces counted", lambda s: str(s["faces"]["positives"])),
            ("label accuracy on matched faces", lambda s: _fmt(s["labelling"]["accuracy"])),
        ]
        lines = [f"{results['images']} images, IoU >= {results['iou_threshold']:g}", "",
                 "| metric | " + " | ".join(title for _, title in sections) + " |", "|---|---|---|"]
        lines += [f"| {name} | " + " | ".join(cell(results[key]) for key, _ in sections) + " |" for name, cell in rows]
        for key, title in sections:
            labelling = results[key]["labelling"]
            lines += ["", f"Labels of matched faces ({title}, {labelling['matched']} faces):", ""]
            lines += confusion_table(labelling)
        return "\n".join(lines)
    lines = [f"{results['count']} crops: accuracy {_fmt(results['accuracy'])}, macro F1 {_fmt(results['macro_f1'])}", ""]
    return "\n".join(lines + class_table(results, digits=3))


def class_table(figures: dict, digits: int = 4) -> list[str]:
    """Markdown lines of :func:`per_class` figures: per-class precision and recall with their
    95 % intervals, F1 and support, then the confusion matrix."""
    labels = figures["labels"]

    def interval(c: dict, key: str) -> str:
        low, high = c.get(key + "_ci95", (0.0, 1.0))
        return f"{c[key]:.{digits}f} ({low:.2f}-{high:.2f})"

    predicted = [sum(row[i] for row in figures["confusion"]) for i in range(len(labels))]

    def row(i: int, label: str, c: dict) -> str:
        """A figure without the crops it needs says "no data" (none of the class, or none predicted as it)."""
        precision = interval(c, "precision") if predicted[i] else "no data"
        recall, f1 = (interval(c, "recall"), f"{c['f1']:.{digits}f}") if c["support"] else ("no data", "no data")
        return f"| {label} | {precision} | {recall} | {f1} | {c['support']} |"

    lines = ["| class | precision (95 % interval) | recall (95 % interval) | F1 | crops |", "|---|---|---|---|---|"]
    lines += [row(i, label, figures["classes"][label]) for i, label in enumerate(labels)]
    return lines + [""] + confusion_table(figures)


def confusion_table(figures: dict) -> list[str]:
    """Markdown lines of a :func:`per_class` confusion matrix (rows: true class)."""
    labels = figures["labels"]
    lines = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    return lines + [f"| {label} | " + " | ".join(str(n) for n in row) + " |" for label, row in zip(labels, figures["confusion"])]
