"""The local ingest pipeline's stages, split out of ``jina_vdb.ingest`` (which runs them).

- ``state``: the queues' messages and the state the stages share;
- ``reader``: items -> skip unchanged -> loaded content (reader thread);
- ``encoder``: loaded content -> batched vectors (calling thread);
- ``writer``: vectors -> records -> upserts (writer thread);
- ``steps``: one encode call, one isolating upsert, one failure report (also used by
  ``jina_vdb.distributed``).
"""

from __future__ import annotations

__all__: list[str] = []
