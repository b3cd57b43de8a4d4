"""The whole classifier recipe behind ``maskwatch convert train-classifier``: load, train, export."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from maskwatch.convert.classifier.export import export, model_stem
from maskwatch.convert.classifier.train import (TrainConfig, add_synthetic_incorrect, load_samples, synth_count, train,
                                                train_quantization_aware)
from maskwatch.convert.export.artefacts import write_history


def train_and_export(config: TrainConfig, formats: list[str], out: Path, keras_out: Path | None = None,
                     also_score: list[Path] = ()) -> list[str]:
    """Train on ``config``'s data and export ``formats`` into ``out``; the file names written.

    ``also_score``: VOC or crop folders not trained on, scored whole beside the val split.
    """
    samples, report = load_samples(config)
    print(report)
    config = replace(config, synth_incorrect=synth_count(samples, config))  # the manifest records the number
    samples = add_synthetic_incorrect(samples, config)
    model, history = train(config, samples)
    if keras_out:
        model.save(keras_out)
    aware = train_quantization_aware(config, samples, model, history)
    also = {}
    for folder in also_score:
        scenes = (folder / "annotations").is_dir()
        extra = TrainConfig(voc=[folder] if scenes else [], crops=[] if scenes else [folder],
                            input_size=config.input_size, voc_boxes=config.voc_boxes, margin=config.margin,
                            aligned=config.aligned)
        also[folder.name] = load_samples(extra)[0]
    sidecar = f"training/{model_stem(config.backbone, config.input_size, config.aligned)}.json"
    names = export(model, config, samples, out, formats, datasets=[Path(d).name for d in [*config.voc, *config.crops]],
                   training={"config": {k: str(v) for k, v in vars(config).items()}, "epochs": len(history),
                             "history": sidecar}, also_score=also, int8_model=aware)
    write_history(out / sidecar, history)
    return names
