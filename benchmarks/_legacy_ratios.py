"""Ratio rows for benchmark documents written before the benchmarks wrote their own.

Until the harness gave every benchmark its ``ratios``, ``run_all.py`` derived them from
each script's results (matching transfer.py's goal text by prefix).  One use remains:
measuring a revision from before the change (``compare_revs.py OLD NEW`` runs OLD's
scripts, whose JSON has no ``ratios``).  This module rebuilds each benchmark's own
result objects from such a document and asks today's script for its rows, so the rows
of both revisions come from the same code, with the same keys, and pair up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from _harness import Ratio, Row, ratios_of

Json = dict[str, Any]

__all__ = ["legacy_ratios"]


def _fields(cls: type, data: Json) -> Json:
    return {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}


def _micro(doc: Json) -> list[Ratio]:
    """buffer_ops.py and pool.py: ``results`` are the harness's rows, as dictionaries."""
    return ratios_of([Row(**_fields(Row, r)) for r in doc["results"]])


def _transfer(doc: Json) -> list[Ratio]:
    """transfer.py: ``results`` are method summaries, each with its samples."""
    import transfer

    results = []
    for r in doc["results"]:
        method = transfer.Method(r["method"], r["section"], r["kind"], lambda ctx: [])
        samples = [transfer.Sample(**_fields(transfer.Sample, s)) for s in r["samples"]]
        results.append(transfer.Result(method, samples))
    return transfer.ratios([r for r in results if r.method.section == "socket"],
                           [r for r in results if r.method.section == "file"])


def _serve(doc: Json) -> list[Ratio]:
    """serve.py: ``results`` are every sample (server, workers, case, requests...)."""
    import serve

    samples: dict[tuple[str, int, str], list[Any]] = {}
    for r in doc["results"]:
        result = serve.Result(**_fields(serve.Result, r))
        samples.setdefault((result.server, result.workers, result.case), []).append(result)
    medians = {k: serve.median_result(v) for k, v in samples.items()}
    return serve.ratios(medians, sorted({k[1] for k in medians}))


EXTRACTORS: dict[str, Callable[[Json], list[Ratio]]] = {
    "buffer_ops": _micro, "pool": _micro, "transfer": _transfer, "serve": _serve,
}


def legacy_ratios(name: str, doc: Json) -> list[Ratio]:
    """The ratio rows of ``doc``, benchmark ``name``'s JSON without ``ratios``."""
    extractor = EXTRACTORS.get(name) or EXTRACTORS.get(str(doc.get("benchmark")))
    if extractor is None:
        raise ValueError(f"no ratio extractor for {name!r}")
    return extractor(doc)
