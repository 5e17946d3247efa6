"""Running an inference request of the protocol through what serves /v1.

The loaded version comes from the same pool, its rows join the same dynamic batchers (a seeded
request shares engine calls with /v1/sample's), and the same limits and counters apply.

    >>> outputs = await infer(model, loaded, inputs, settings, metrics)  # {"image": ...}
"""

from __future__ import annotations

import numpy as np

from app.metrics import Metrics
from app.oip.models import V2Model, check_inputs, check_served, inputs, max_batch
from app.serving import generation
from app.serving.pool import LoadedModel
from app.settings import Settings
from core.errors import BadRequest


async def infer(
    model: V2Model,
    loaded: LoadedModel,
    given: dict[str, np.ndarray],
    settings: Settings,
    metrics: Metrics,
) -> dict[str, np.ndarray]:
    m = loaded.manifest
    check_served(model, m)
    rows = check_inputs(model, inputs(model.kind, m), given, max_batch(model.kind, settings))
    label = given.get("label")
    labels = None if label is None else label.tolist()
    served = (loaded.name, str(loaded.version))
    if model.kind == "discriminator":
        y = generation.resolve_labels(m, range(rows), labels, field="label")
        logits = await loaded.discriminate(given["image"], y)
        metrics.images_scored.labels(*served).inc(rows)
        return {"logit": logits.reshape(rows, 1)}
    if model.kind == "generator":
        y = generation.resolve_labels(m, range(rows), labels, field="label")
        image = await loaded.tensors(given["z"], y)
        metrics.images_generated.labels(*served).inc(rows)
        return {"image": image}
    seeds = given["seed"]
    if (seeds < 0).any():
        raise BadRequest("seeds must be 0 or more")
    y = generation.resolve_labels(m, seeds.tolist(), labels, field="label")
    feeds = {"seed": seeds}
    truncation = given.get("truncation")
    if truncation is not None:
        generation.check_truncation(float(truncation.min()), settings.min_truncation)
        # float64, as /v1/sample sends it, so that both share engine calls.
        feeds["truncation"] = truncation.astype(np.float64)
    images = await loaded.generate(feeds, y)
    metrics.images_generated.labels(*served).inc(rows)
    return {"image": images}
