"""What the struct layout SENDS to a Milvus >= 2.6.4 server, built without a client or server.

The connector's request builders are plain functions of the spec, the SearchPlan and the
candidates (collection.create_request, search.stage_request, search.struct_fusion_request,
writes.document_rows, struct_layout.with_struct_tokens); each request is then turned into
its protobuf message by pymilvus' own ``Prepare`` builders, as ``MilvusClient`` would before
sending it, so a request pymilvus would refuse fails here. No test double answers anything:
what these requests return on a real server (numpy MaxSim, RRF, the guard, max_tokens) is
tested by the contract suite and tests/integration/test_milvus_server.py with ``MILVUS_URI``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from corpus import CONTRACT_MUVERA, make_corpus, random_query
from pymilvus.client import ts_utils
from pymilvus.client.abstract import CollectionSchema as DescribedSchema
from pymilvus.client.embedding_list import EmbeddingList
from pymilvus.client.prepare import Prepare
from pymilvus.client.utils import convert_struct_fields_to_user_format
from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from connectors import CollectionSpec, Eq, Record, RecordError, SchemaMismatchError
from connectors.milvus import collection, search, writes
from connectors.milvus import convert as cv
from connectors.milvus import struct_layout as sl
from connectors.milvus.layout import Consistency, Target, check_consistency
from connectors.milvus.struct_layout import StructLayout
from connectors.query import build_plan, query_vectors
from connectors.records import prepare_records

SPEC = CollectionSpec(dim=64, prefetch_dims=(16,))
KEYS = ["i:3", 's:a"b', "s:doc-1"]  # candidates a previous stage returned
EXPR = cv.filter_expr(Eq("lang", "de"))


def struct_target(
    name: str,
    spec: CollectionSpec,
    *,
    max_tokens: int = sl.DEFAULT_MAX_TOKENS,
    consistency: Consistency = Consistency.SESSION,
    num_shards: int | None = None,
) -> tuple[Target, StructLayout]:
    """A struct-layout collection's target with no client: request building only."""
    t = Target(
        client=None,  # type: ignore[arg-type] - nothing here may send a request
        name=name,
        spec=spec,
        max_tokens=max_tokens,
        create=collection.create_kwargs(consistency, num_shards),
        consistency=consistency,
    )
    return t, StructLayout(t)


# -- pymilvus' own request builders (what MilvusClient does before sending) ------------------
def wire_schema(name: str, schema: Any) -> schema_pb2.CollectionSchema:
    """The CollectionSchema message create_collection sends."""
    proto = schema_pb2.CollectionSchema()
    proto.ParseFromString(Prepare.create_collection_request(name, schema).schema)
    return proto


def described(proto: schema_pb2.CollectionSchema) -> dict[str, Any]:
    """``MilvusClient.describe_collection``'s dict for a server describing ``proto``."""
    result = DescribedSchema(milvus_pb2.DescribeCollectionResponse(schema=proto)).dict()
    result["fields"].extend(convert_struct_fields_to_user_format(result["struct_array_fields"]))
    result.pop("struct_array_fields")
    return result


def wire_search(
    name: str, request: dict[str, Any], read: dict[str, Any] | None = None
) -> milvus_pb2.SearchRequest:
    """The SearchRequest ``MilvusClient.search(name, **request, **read)`` sends."""
    kwargs = dict(read or {})
    default = ts_utils.construct_guarantee_ts(name, kwargs)
    data = request["data"]
    embedding = isinstance(data[0], EmbeddingList)
    return Prepare.search_requests_with_expr(
        name,
        request["anns_field"],
        request["search_params"],
        request["limit"],
        data=[d.to_flat_array() for d in data] if embedding else data,
        expr=request["filter"],
        output_fields=request["output_fields"],
        is_embedding_list=embedding,
        use_default_consistency=default,
        **kwargs,
    )


def wire_hybrid(
    name: str, request: dict[str, Any], read: dict[str, Any] | None = None
) -> milvus_pb2.HybridSearchRequest:
    """The HybridSearchRequest ``MilvusClient.hybrid_search(name, **request, **read)`` sends."""
    kwargs = dict(read or {})
    default = ts_utils.construct_guarantee_ts(name, kwargs)
    searches = [
        wire_search(
            name,
            {
                "data": req.data,
                "anns_field": req.anns_field,
                "search_params": req.param,
                "limit": req.limit,
                "filter": req.expr,
                "output_fields": None,
            },
            read,
        )
        for req in request["reqs"]
    ]
    return Prepare.hybrid_search_request_with_ranker(
        name,
        searches,
        request["ranker"],
        request["limit"],
        None,
        request["output_fields"],
        use_default_consistency=default,
        **kwargs,
    )


def placeholder_type(message: milvus_pb2.SearchRequest) -> int:
    group = common_pb2.PlaceholderGroup()
    group.ParseFromString(message.placeholder_group)
    return group.placeholders[0].type


def search_params(message: milvus_pb2.SearchRequest) -> dict[str, str]:
    return {kv.key: kv.value for kv in message.search_params}


# -- creation ----------------------------------------------------------------------------------
def test_struct_schema_and_indexes_as_sent():
    spec = CollectionSpec(dim=2048, prefetch_dims=(128,))
    t, layout = struct_target("docs", spec, num_shards=2)
    request = collection.create_request(t, spec, layout, {})
    schema = request.schema.to_dict()
    assert [(f["name"], f["type"].name, f.get("params")) for f in schema["fields"]] == [
        ("pk", "VARCHAR", {"max_length": 1024}),
        ("dense", "FLOAT_VECTOR", {"dim": 2048}),
        ("dense_128", "FLOAT_VECTOR", {"dim": 128}),
        ("payload", "JSON", None),
    ]
    (struct,) = schema["struct_fields"]
    assert struct["name"] == "multi" and struct["max_capacity"] == sl.DEFAULT_MAX_TOKENS == 1024
    assert [(f["name"], f["type"].name, f["params"]) for f in struct["fields"]] == [
        ("vec", "FLOAT_VECTOR", {"dim": 128})
    ]
    assert t.create == {"num_shards": 2, "consistency_level": "Session"}
    assert (
        request.properties[cv.PROP_LAYOUT] == "struct"
        and request.properties[cv.PROP_MAX_TOKENS] == "1024"
    )
    indexes = list(request.index_params)
    assert [
        (p.field_name, p.index_type, p.get_index_configs()["metric_type"]) for p in indexes
    ] == [
        ("dense", "HNSW", "COSINE"),
        ("dense_128", "HNSW", "COSINE"),
        ("multi[vec]", "HNSW", "MAX_SIM_COSINE"),
    ]
    for p in indexes:  # each one as create_index sends it
        message = Prepare.create_index_request(
            "docs", p.field_name, p.get_index_configs(), index_name=p.index_name
        )
        assert message.field_name == p.field_name
    # On the wire: the struct's vector is an ARRAY_OF_VECTOR of FLOAT_VECTOR, dim and max_capacity.
    proto = wire_schema("docs", request.schema)
    (sub,) = described(proto)["fields"][-1]["struct_fields"]
    wire = DescribedSchema(milvus_pb2.DescribeCollectionResponse(schema=proto)).dict()
    (wire_sub,) = wire["struct_array_fields"][0]["fields"]
    assert (wire_sub["type"].name, wire_sub["element_type"].name) == (
        "_ARRAY_OF_VECTOR",
        "FLOAT_VECTOR",
    )
    assert wire_sub["params"] == {"dim": 128, "max_capacity": 1024}
    assert sub["name"] == "vec"


def test_guard_passes_a_struct_field_described_back_and_catches_a_dropped_one():
    """``verify`` reads describe_collection as pymilvus renders it: the sent schema described
    back passes; the same schema without its struct field (what Milvus Lite keeps) is refused.
    The real cases: Milvus Lite in test_milvus.py, a 2.6 server in tests/integration."""
    t, layout = struct_target("ko", SPEC)
    proto = wire_schema("ko", collection.create_request(t, SPEC, layout, {}).schema)
    kept = described(proto)
    cv.check_description("ko", kept, SPEC, layout.kind)
    layout.verify(kept)
    del proto.struct_array_fields[:]
    with pytest.raises(SchemaMismatchError, match=r"dropped the Array of Structs field 'multi'"):
        layout.verify(described(proto))


# -- searches ----------------------------------------------------------------------------------
def test_maxsim_and_fusion_requests():
    tokens = np.random.default_rng(0).standard_normal((5, 128)).astype(np.float32)
    request = sl.maxsim_request("multi", tokens, 7, 'pk in ["i:1"]')
    (query,) = request["data"]
    np.testing.assert_array_equal(query.to_numpy(), tokens)
    assert {k: v for k, v in request.items() if k != "data"} == {
        "anns_field": "multi[vec]",
        "limit": 7,
        "filter": 'pk in ["i:1"]',
        "output_fields": ["payload"],
        "search_params": {"metric_type": "MAX_SIM_COSINE", "params": {"ef": 128}},
    }
    message = wire_search("c", request)
    assert placeholder_type(message) == common_pb2.PlaceholderType.EmbListFloatVector
    assert (message.dsl, search_params(message)["anns_field"]) == ('pk in ["i:1"]', "multi[vec]")
    fusion = sl.fusion_request(
        "dense", np.ones(64), "multi", tokens, ["i:1", "s:a"], 100, 10, '(exists payload["x"])', 60
    )
    dense_req, multi_req = fusion["reqs"]
    assert (dense_req.anns_field, dense_req.limit, dense_req.expr) == (
        "dense",
        100,
        '(exists payload["x"])',
    )
    assert dense_req.param == {"metric_type": "COSINE", "params": {"ef": 128}}  # ef >= 128
    assert (multi_req.anns_field, multi_req.limit, multi_req.expr) == (
        "multi[vec]",
        100,
        'pk in ["i:1", "s:a"]',
    )
    assert multi_req.param["metric_type"] == "MAX_SIM_COSINE"
    assert fusion["ranker"].dict() == {"strategy": "rrf", "params": {"k": 60}}
    assert (fusion["limit"], fusion["output_fields"]) == (10, ["payload"])
    hybrid = wire_hybrid("c", fusion)
    assert [placeholder_type(r) for r in hybrid.requests] == [
        common_pb2.PlaceholderType.FloatVector,
        common_pb2.PlaceholderType.EmbListFloatVector,
    ]
    ranking = {kv.key: kv.value for kv in hybrid.rank_params}
    assert ranking["strategy"] == "rrf" and ranking["limit"] == "10"


MUVERA_SPEC = CollectionSpec(dim=64, prefetch_dims=(16,), muvera=CONTRACT_MUVERA)
IN_KEYS = cv.in_expr("pk", KEYS)
#: (field, limit, filter, metric) of each stage's search, the first stage on the filter and
#: every later one on the previous stage's candidates (KEYS); limit 5, prefetch_limit 20.
STAGES = {
    "dense": [("dense", 5, EXPR, "COSINE")],
    "multivector": [("multi[vec]", 5, EXPR, "MAX_SIM_COSINE")],
    "hybrid": [("dense", 20, EXPR, "COSINE"), ("multi[vec]", 5, IN_KEYS, "MAX_SIM_COSINE")],
    "funnel": [
        ("dense_16", 80, EXPR, "COSINE"),  # prefetch x funnel_factor 4
        ("dense", 20, IN_KEYS, "COSINE"),
        ("multi[vec]", 5, IN_KEYS, "MAX_SIM_COSINE"),
    ],
    "muvera": [("muvera", 20, EXPR, "IP"), ("multi[vec]", 5, IN_KEYS, "MAX_SIM_COSINE")],
}


@pytest.mark.parametrize("mode", sorted(STAGES))
def test_struct_stage_requests_of_every_plan_mode(mode):
    """Each stage of the plan's cascade as sent: its field, limit, restriction and metric;
    payloads come with a stage only when its hits are the answer (limit <= the query's)."""
    plan = build_plan(MUVERA_SPEC, mode, limit=5, prefetch_limit=20, filter=Eq("lang", "de"))
    vectors = query_vectors(random_query(seed=2, dim=64), MUVERA_SPEC, plan)
    (cascade,) = plan.cascades
    sent = []
    for i, stage in enumerate(cascade):
        keys = None if i == 0 else KEYS
        request = search.stage_request(MUVERA_SPEC, stage, vectors, EXPR, keys, plan.limit)
        message = wire_search("c", request)
        assert message.dsl == request["filter"]
        metric = search_params(message)["metric_type"]
        sent.append((request["anns_field"], request["limit"], request["filter"], metric))
        expected_output = ["payload"] if stage.maxsim or stage.limit <= plan.limit else []
        assert request["output_fields"] == expected_output, stage
        expected_type = (
            common_pb2.PlaceholderType.EmbListFloatVector
            if stage.maxsim
            else common_pb2.PlaceholderType.FloatVector
        )
        assert placeholder_type(message) == expected_type
    assert sent == STAGES[mode]


def test_struct_fusion_plan_is_one_hybrid_search_with_rrf():
    """Fusion: the dense stage's candidates (a search of its own, as in hybrid), then one
    hybrid_search: the same dense search and MaxSim over those candidates, RRF k=60."""
    plan = build_plan(SPEC, "fusion", limit=10, prefetch_limit=50, filter=Eq("lang", "de"))
    vectors = query_vectors(random_query(seed=3, dim=64), SPEC, plan)
    (dense_stage,) = plan.cascades[0]
    first = search.stage_request(SPEC, dense_stage, vectors, EXPR, None, plan.limit, ef=300)
    assert (first["anns_field"], first["limit"], first["filter"]) == ("dense", 50, EXPR)
    assert first["search_params"]["params"]["ef"] == 300
    request = search.struct_fusion_request(SPEC, plan, vectors, EXPR, KEYS, ef=300)
    dense_req, multi_req = request["reqs"]
    assert (dense_req.anns_field, dense_req.limit, dense_req.expr) == ("dense", 50, EXPR)
    assert dense_req.param["params"]["ef"] == 300
    assert (multi_req.anns_field, multi_req.limit, multi_req.expr) == ("multi[vec]", 50, IN_KEYS)
    assert request["ranker"].dict() == {"strategy": "rrf", "params": {"k": plan.rrf_k}}
    assert (request["limit"], request["output_fields"]) == (10, ["payload"])
    np.testing.assert_array_equal(multi_req.data[0].to_numpy(), vectors["multi"])
    wire_hybrid("c", request)


@pytest.mark.parametrize("level", [None, "Strong", "Session", "Bounded", "Eventually"])
def test_reads_carry_the_store_consistency_level_on_the_wire(level):
    """Every read adds ``Target.read``; pymilvus puts its level into the request message.
    (That every read of a real store is sent with it: tests/integration.)"""
    consistency = check_consistency(level)
    t, layout = struct_target("c", SPEC, consistency=consistency)
    assert t.read == {"consistency_level": (level or "Session")}
    assert t.create["consistency_level"] == (level or "Session")
    tokens = np.ones((3, 128), dtype=np.float32)
    expected = getattr(common_pb2.ConsistencyLevel, level or "Session")
    message = wire_search("c", sl.maxsim_stage_request("multi", tokens, 5, "", KEYS), t.read)
    assert message.consistency_level == expected and not message.use_default_consistency
    fusion = sl.fusion_request("dense", np.ones(64), "multi", tokens, KEYS, 20, 5, "", 60)
    assert wire_hybrid("c", fusion, t.read).consistency_level == expected


# -- writes ------------------------------------------------------------------------------------
def test_struct_rows_as_sent():
    """pk, dense fields, payload and the tokens as a struct array (float16-rounded values as
    float32: the sub-field is FLOAT_VECTOR), accepted by pymilvus for the described schema."""
    corpus = make_corpus()
    t, layout = struct_target("contract", corpus.spec)
    prepared = prepare_records(corpus.records, corpus.spec)
    keys, rows, tokens = writes.document_rows(corpus.spec, {}, prepared)
    rows = sl.with_struct_tokens(layout.field, rows, tokens)
    row = rows[1]
    assert keys[1] == row["pk"] == "s:doc-1" and row["payload"] == corpus.records[1].payload
    assert set(row) == {"pk", "dense", "dense_32", "payload", "multi"}
    stored = np.asarray([e["vec"] for e in row["multi"]])
    np.testing.assert_allclose(stored, corpus.stored_tokens(corpus.records[1]), atol=1e-6)
    wire = DescribedSchema(
        milvus_pb2.DescribeCollectionResponse(
            schema=wire_schema("contract", collection.create_request(t, t.spec, layout, {}).schema)
        )
    ).dict()
    message = Prepare.row_upsert_param(
        "contract", rows, "", wire["fields"], wire["struct_array_fields"]
    )
    assert message.num_rows == len(corpus.records)


def test_too_many_tokens_are_refused_before_anything_is_sent():
    rng = np.random.default_rng(0)
    ok, too_long = (
        Record(i, rng.standard_normal(64), rng.standard_normal((t, 128)), {})
        for i, t in ((1, 4), (2, 5))
    )
    prepared = prepare_records([ok, too_long], SPEC)
    writes.check_record(prepared[0], 0, SPEC, 4)
    with pytest.raises(
        RecordError, match=r"record 1 id=2: multivector has 5 tokens; .*max_tokens is 4"
    ):
        writes.check_record(prepared[1], 1, SPEC, 4)
    writes.check_record(prepared[1], 1, SPEC, None)  # no cap: the companion layouts
