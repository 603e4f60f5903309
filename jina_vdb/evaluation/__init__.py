"""Retrieval quality and latency on labelled sets (``jina-vdb eval``).

``metrics`` (nDCG, recall, MRR as trec_eval computes them) and ``beir`` (the BEIR layout's
reader) are pure Python: benchmarks import them without torch or a database client. ``runner``
ingests a corpus and times searches (it needs ``connectors``; imported on its own).
"""

from __future__ import annotations

from .beir import BeirDataset as BeirDataset
from .beir import DatasetError as DatasetError
from .beir import load_dataset as load_dataset
from .metrics import DEFAULT_METRICS as DEFAULT_METRICS
from .metrics import Metric as Metric
from .metrics import MetricName as MetricName
from .metrics import evaluate_run as evaluate_run
from .metrics import mean_metrics as mean_metrics
from .metrics import mrr_at_k as mrr_at_k
from .metrics import ndcg_at_k as ndcg_at_k
from .metrics import parse_metric as parse_metric
from .metrics import percentile as percentile
from .metrics import recall_at_k as recall_at_k

__all__ = [
    "DEFAULT_METRICS",
    "BeirDataset",
    "DatasetError",
    "Metric",
    "MetricName",
    "evaluate_run",
    "load_dataset",
    "mean_metrics",
    "mrr_at_k",
    "ndcg_at_k",
    "parse_metric",
    "percentile",
    "recall_at_k",
]
