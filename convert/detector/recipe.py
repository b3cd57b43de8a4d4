"""The whole detector recipe behind ``maskwatch convert train-detector``: load, fine-tune, export."""
from __future__ import annotations

from pathlib import Path

from maskwatch.convert.detector.convert_graph import check_sizes
from maskwatch.convert.detector.export import DEFAULT_FORMATS, DEFAULT_SIZES, export_detector
from maskwatch.convert.detector.graph import parse_graph_def
from maskwatch.convert.detector.train import DetectorTrainConfig, load_scenes, train_detector
from maskwatch.convert.export.artefacts import write_history
from maskwatch.convert.export.formats import check_request
from maskwatch.convert.weights.retinaface import graph_bytes


def train_and_export(config: DetectorTrainConfig, formats: list[str] | None, sizes: list[int] | None, out: Path,
                     keras_out: Path | None = None, graph: Path | None = None, cache: Path | None = None,
                     trust_graph: bool = False) -> list[str]:
    """Fine-tune RetinaFace with a mask head on ``config``'s scenes and export it into ``out``; the file
    names written. Formats and sizes are checked before any training starts."""
    formats, sizes = formats or list(DEFAULT_FORMATS), sizes or list(DEFAULT_SIZES)
    check_sizes(sizes)
    check_request(formats, set())  # an unknown format fails now, not after training
    data, digest = graph_bytes(graph, cache, trust_graph)
    scenes, report = load_scenes(config)
    print(report)
    model, history = train_detector(config, scenes, parse_graph_def(data))
    if keras_out:
        model.save(keras_out)
    sidecar = "training/retinaface_mask_mnv2.json"
    names = export_detector(model, scenes, out, formats, sizes, datasets=[Path(p).name for p in config.voc],
                            training={**history, "history": sidecar}, graph_sha256=digest,
                            anchor_config=config.anchor_config)
    write_history(out / sidecar, history)
    return names
