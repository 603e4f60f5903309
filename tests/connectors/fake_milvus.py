"""An in-memory stand-in for a Milvus 2.6 server behind ``pymilvus.MilvusClient``.

No Milvus >= 2.6.4 can run on these machines, so the struct layout is tested against this
fake: every schema, row and search request goes through pymilvus' own request builders
(``Prepare``), so a malformed request fails here as it would before reaching a server, and
the answers follow Milvus' documented semantics (COSINE similarity, MAX_SIM_COSINE = sum over
query tokens of the best cosine, RRF = sum of 1 / (k + rank from 1)). Filters: only the
``pk in [...]`` restrictions the cascades send (payload filters need a real server).
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
from pymilvus.client.abstract import CollectionSchema as DescribedSchema
from pymilvus.client.embedding_list import EmbeddingList
from pymilvus.client.prepare import Prepare
from pymilvus.client.utils import convert_struct_fields_to_user_format
from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from connectors.vectors import l2_normalize, maxsim


class FakeMilvus:
    """The MilvusClient methods MilvusStore calls, with a log of every call."""

    def __init__(self, version: str = "v2.6.4", *, drop_struct_fields: bool = False) -> None:
        self.version = version
        self.drop_struct_fields = drop_struct_fields  # behave like Milvus Lite
        self.collections: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        #: (read method, consistency_level it was sent with) for every read.
        self.reads: list[tuple[str, Any]] = []

    def _log(self, method: str, **kwargs: Any) -> None:
        self.calls.append((method, kwargs))

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        return [kw for m, kw in self.calls if m == method]

    # -- collections ----------------------------------------------------------------------
    def get_server_version(self, **kw: Any) -> str:
        return self.version

    def has_collection(self, name: str, **kw: Any) -> bool:
        return name in self.collections

    def create_collection(
        self, name: str, schema: Any = None, properties: dict | None = None, **kw: Any
    ) -> None:
        self._log("create_collection", name=name, schema=schema, properties=properties, **kw)
        request = Prepare.create_collection_request(name, schema)  # what pymilvus would send
        proto = schema_pb2.CollectionSchema()
        proto.ParseFromString(request.schema)
        if self.drop_struct_fields:
            del proto.struct_array_fields[:]
        described = DescribedSchema(milvus_pb2.DescribeCollectionResponse(schema=proto)).dict()
        self.collections[name] = {
            "described": described,
            "properties": dict(properties or {}),
            "rows": {},
            "indexes": [],
        }

    def describe_collection(self, name: str, **kw: Any) -> dict[str, Any]:
        described = dict(self.collections[name]["described"])
        struct = described.pop("struct_array_fields", [])
        described["fields"] = list(described["fields"]) + convert_struct_fields_to_user_format(
            struct
        )
        described["properties"] = dict(self.collections[name]["properties"])
        return described

    def drop_collection(self, name: str, **kw: Any) -> None:
        self._log("drop_collection", name=name)
        self.collections.pop(name, None)

    def list_indexes(self, name: str, **kw: Any) -> list[str]:
        return [p.index_name for p in self.collections[name]["indexes"]]

    def create_index(self, name: str, index_params: Any, **kw: Any) -> None:
        self._log("create_index", name=name, index_params=list(index_params), **kw)
        self.collections[name]["indexes"].extend(index_params)

    def load_collection(self, name: str, **kw: Any) -> None:
        self._log("load_collection", name=name)

    def get_load_state(self, name: str, **kw: Any) -> dict[str, Any]:
        return {"state": "Loaded"}

    def close(self) -> None:
        self._log("close")

    # -- rows ---------------------------------------------------------------------------
    def upsert(self, name: str, rows: list[dict[str, Any]], **kw: Any) -> None:
        self._log("upsert", name=name, rows=rows)
        described = self.collections[name]["described"]
        Prepare.row_upsert_param(
            name, rows, "", described["fields"], described.get("struct_array_fields", [])
        )
        for row in rows:
            self.collections[name]["rows"][row["pk"]] = json.loads(json.dumps(row, default=_plain))

    def get(
        self, name: str, ids: list[str], output_fields: list[str], **kw: Any
    ) -> list[dict[str, Any]]:
        self.reads.append(("get", kw.get("consistency_level")))
        rows = self.collections[name]["rows"]
        wanted = set(ids)
        return [
            {"pk": k, **{f: r[f] for f in output_fields}} for k, r in rows.items() if k in wanted
        ]

    def delete(self, name: str, ids: list[str] | None = None, filter: str = "", **kw: Any) -> None:
        self._log("delete", name=name, ids=ids, filter=filter)
        for key in ids if ids is not None else _pk_filter(filter) or []:
            self.collections[name]["rows"].pop(key, None)

    def query(
        self, name: str, filter: str = "", output_fields: list[str] | None = None, **kw: Any
    ) -> list[dict]:
        self.reads.append(("query", kw.get("consistency_level")))
        if output_fields == ["count(*)"] and not filter:
            return [{"count(*)": len(self.collections[name]["rows"])}]
        keys = _pk_filter(filter) if filter else None
        if keys is not None and output_fields is not None:
            return self.get(name, keys, output_fields, **kw)
        raise NotImplementedError(f"fake query({filter!r}, {output_fields})")

    # -- search -------------------------------------------------------------------------
    def search(
        self,
        name: str,
        data: list,
        anns_field: str,
        limit: int,
        filter: str = "",
        output_fields: list[str] | None = None,
        search_params: dict | None = None,
        **kw: Any,
    ) -> list[list[dict]]:
        self.reads.append(("search", kw.get("consistency_level")))
        self._log(
            "search",
            name=name,
            data=data,
            anns_field=anns_field,
            limit=limit,
            filter=filter,
            output_fields=output_fields,
            search_params=search_params,
        )
        self._serialize(name, data, anns_field, limit, filter, output_fields, search_params)
        return [self._rank(name, data[0], anns_field, limit, filter, output_fields or [])]

    def hybrid_search(
        self,
        name: str,
        reqs: list,
        ranker: Any,
        limit: int,
        output_fields: list[str] | None = None,
        **kw: Any,
    ) -> list[list[dict]]:
        self.reads.append(("hybrid_search", kw.get("consistency_level")))
        self._log(
            "hybrid_search",
            name=name,
            reqs=reqs,
            ranker=ranker,
            limit=limit,
            output_fields=output_fields,
        )
        k = ranker.dict()["params"]["k"]
        scores: dict[str, float] = {}
        for req in reqs:
            self._serialize(
                name, req.data, req.anns_field, req.limit, req.expr or "", output_fields, req.param
            )
            for rank, hit in enumerate(
                self._rank(name, req.data[0], req.anns_field, req.limit, req.expr or "", []), 1
            ):
                scores[hit["pk"]] = scores.get(hit["pk"], 0.0) + 1.0 / (k + rank)
        rows = self.collections[name]["rows"]
        best = sorted(scores.items(), key=lambda kv: -kv[1])[:limit]
        return [
            [
                {"pk": key, "distance": s, "entity": {f: rows[key][f] for f in output_fields or []}}
                for key, s in best
            ]
        ]

    def _serialize(self, name, data, anns_field, limit, expr, output_fields, param) -> None:
        """Build the protobuf request the way MilvusClient.search does (fails on bad shapes)."""
        embedding = isinstance(data[0], EmbeddingList)
        flat = [d.to_flat_array() for d in data] if embedding else data
        request = Prepare.search_requests_with_expr(
            name,
            anns_field,
            param,
            limit,
            data=flat,
            expr=expr,
            output_fields=output_fields,
            is_embedding_list=embedding,
        )
        group = common_pb2.PlaceholderGroup()
        group.ParseFromString(request.placeholder_group)
        expected = (
            common_pb2.PlaceholderType.EmbListFloatVector
            if embedding
            else common_pb2.PlaceholderType.FloatVector
        )
        assert group.placeholders[0].type == expected, (anns_field, group.placeholders[0].type)

    def _rank(self, name, query, anns_field, limit, expr, output_fields) -> list[dict]:
        rows = self.collections[name]["rows"]
        keys = _pk_filter(expr) if expr else list(rows)
        keys = [k for k in keys if k in rows]
        m = re.fullmatch(r"(\w+)\[(\w+)\]", anns_field)
        if m:  # MAX_SIM_COSINE over the struct's embedding list
            field, sub = m.groups()
            q = query.to_numpy()
            scores = [
                maxsim(q, np.asarray([e[sub] for e in rows[k][field]], dtype=np.float32))
                for k in keys
            ]
        else:
            q = l2_normalize(np.asarray(query, dtype=np.float32))
            scores = [
                float(l2_normalize(np.asarray(rows[k][anns_field], dtype=np.float32)) @ q)
                for k in keys
            ]
        order = np.argsort(-np.asarray(scores), kind="stable")[:limit]
        return [
            {
                "pk": keys[i],
                "distance": scores[i],
                "entity": {f: rows[keys[i]][f] for f in output_fields},
            }
            for i in order
        ]


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value))


def _pk_filter(expr: str) -> list[str] | None:
    m = re.fullmatch(r"pk in \[(.*)\]", expr.strip())
    if not m:
        raise NotImplementedError(f"the fake server only understands 'pk in [...]', got {expr!r}")
    return json.loads(f"[{m.group(1)}]", strict=False)
