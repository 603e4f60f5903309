"""How ``jina-vdb search`` shows hits: what the score means, where each hit is, filter checks.

Scores are on different scales per mode, so the output names the scale:

- ``cosine`` (mode dense; funnel without token vectors): cosine of the dense vectors, -1..1.
- ``maxsim`` (multivector, hybrid, funnel): late interaction, the sum over the query's q
  tokens of each token's best cosine with the document's tokens, so up to q (a 10-token
  query scores up to 10). ``--score-per-token`` divides it by q: the mean, -1..1.
- ``rrf`` (fusion): reciprocal rank fusion of the dense and MaxSim rankings, the sum of
  1/(60 + rank) over both, at most 2/61 ~ 0.033: it compares ranks, not similarity.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

import typer

from connectors.filters import Filter, filter_keys
from connectors.query import Hit, SearchMode
from jina_vdb.payload import Payload, read_payload

#: Records read (at most) to tell whether any record has a filter's key.
KEY_CHECK_RECORDS = 10_000


def score_kind(mode: SearchMode, multivector: bool, *, per_token: bool = False) -> str:
    """The scale of a mode's scores: cosine, maxsim, maxsim/token or rrf."""
    if mode is SearchMode.FUSION:
        kind = "rrf"
    elif mode is SearchMode.DENSE or (mode is SearchMode.FUNNEL and not multivector):
        kind = "cosine"
    else:
        kind = "maxsim"
    if per_token:
        if kind != "maxsim":
            raise ValueError(
                f"--score-per-token divides MaxSim scores by the query's token count; mode "
                f"{mode.value!r} scores with {kind}: use --mode hybrid, multivector or funnel"
            )
        kind = "maxsim/token"
    return kind


def score_note(kind: str, query_tokens: int | None) -> str:
    """One line saying what the score column means."""
    q = query_tokens or 0
    return {
        "cosine": "score: cosine similarity of the dense vectors, -1..1 (higher is closer)",
        "maxsim": f"score: MaxSim, the sum over the query's {q} tokens of each token's best "
        f"cosine with the document's tokens (at most {q}; --score-per-token divides by {q})",
        "maxsim/token": f"score: MaxSim per query token (the sum divided by the query's {q} "
        "tokens), -1..1",
        "rrf": "score: reciprocal rank fusion of the dense and MaxSim rankings, "
        "sum of 1/(60 + rank), at most 0.033 (ranks, not similarity)",
    }[kind]


def short_sources(sources: Sequence[str]) -> dict[str, str]:
    """Each path's shortest suffix of whole components that no other path here ends with."""
    parts = {s: PurePosixPath(s).parts for s in dict.fromkeys(sources)}
    short = {}
    for source, mine in parts.items():
        for n in range(1, len(mine) + 1):
            tail = mine[-n:]
            if not any(o != source and other[-n:] == tail for o, other in parts.items()):
                break
        short[source] = "/".join(tail)
    return short


def location(payload: Payload, shown: str) -> str:
    """``path:LINE``, ``path#page=N`` (+ `` chunk N`` past the first chunk of a page or file)."""
    where = shown
    if payload.get("page") is not None:
        where += f"#page={payload['page']}"
    if payload.get("line") is not None:
        where += f":{payload['line']}"
    elif payload.get("chunk"):
        where += f" chunk {payload['chunk']}"
    return where


def print_hits(
    hits: Sequence[Hit],
    *,
    as_json: bool,
    kind: str,
    query_tokens: int | None = None,
) -> None:
    """Hits as an aligned table under a line saying what the score means, or as JSON."""
    scale = query_tokens if kind == "maxsim/token" and query_tokens else 1
    if as_json:
        rows = [
            {"id": str(h.id), "score": h.score / scale, "score_kind": kind, "payload": h.payload}
            for h in hits
        ]
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    if not hits:
        typer.echo("no results")
        return
    payloads = [read_payload(h.payload) for h in hits]
    short = short_sources([str(p.get("source", h.id)) for p, h in zip(payloads, hits, strict=True)])
    typer.echo(score_note(kind, query_tokens))
    typer.echo(f"{'rank':>4}  {kind:>12}  {'kind':<8}  source")
    for rank, (hit, p) in enumerate(zip(hits, payloads, strict=True), start=1):
        where = location(p, short[str(p.get("source", hit.id))])
        snippet = " ".join(str(p.get("text", "")).split())
        snippet = (snippet[:70] + "...") if len(snippet) > 73 else snippet
        text = f'  "{snippet}"' if snippet else ""
        typer.echo(f"{rank:>4}  {hit.score / scale:>12.4f}  {p.get('kind', ''):<8}  {where}{text}")


def warn_missing_keys(db: Any, flt: Filter | None) -> None:
    """Warn (stderr) about filter keys that no record has: such a filter finds nothing."""
    missing = set(filter_keys(flt))
    if not missing:
        return
    fields: set[str] = set()
    seen = 0
    for record in db.scan(page_size=1000):
        payload = record.payload or {}
        missing -= {k for k in missing if _has(payload, k)}
        fields |= _fields(payload)
        seen += 1
        if not missing or seen >= KEY_CHECK_RECORDS:
            break
    for key in sorted(missing):
        scope = "no record" if seen < KEY_CHECK_RECORDS else f"none of the first {seen} records"
        typer.echo(
            f"warning: {scope} in this collection has the field {key!r}, so the filter on it "
            f"matches nothing; fields: {', '.join(sorted(fields)) or '(none)'}",
            err=True,
        )


def _has(payload: dict[str, Any], key: str) -> bool:
    value: Any = payload
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


def _fields(payload: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for key, value in payload.items():
        out.add(prefix + key)
        if isinstance(value, dict) and not prefix:  # one level: meta.*
            out |= _fields(value, f"{key}.")
    return out
