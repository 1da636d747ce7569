"""Evaluation: section 7's test protocol (crops, model averaging), top-k metrics and Table 3.

metrics    aggregate (softmax mean or max over crops, mean over models), top-k, per-class accuracy
models     Member (a logits callable + normalisation), Ensemble, load_ensemble
evalset    which images and labels: an image folder, the built-in data or ImageNet val
protocol   evaluate_views: crops cut once per image, each model once per crop, all views scored
table3     the paper's Table 3 as data; ours beside it as text, JSON, CSV and a plot
command    `googlenet evaluate`
"""

from googlenet.evaluate.evalset import EvalSet, limit_samples, load_eval_set, match_classes
from googlenet.evaluate.metrics import (
    REDUCTIONS,
    ClassificationMeter,
    aggregate,
    aggregate_probs,
    topk_correct,
)
from googlenet.evaluate.models import Ensemble, Member, load_ensemble, resolve_device
from googlenet.evaluate.protocol import CropBatch, View, crop_loader, evaluate_views, run_views
from googlenet.evaluate.table3 import PAPER_TABLE3, Table3Row, format_table3, save_table3, table3_rows

__all__ = [
    "PAPER_TABLE3",
    "REDUCTIONS",
    "ClassificationMeter",
    "CropBatch",
    "Ensemble",
    "EvalSet",
    "Member",
    "Table3Row",
    "View",
    "aggregate",
    "aggregate_probs",
    "crop_loader",
    "evaluate_views",
    "format_table3",
    "limit_samples",
    "load_ensemble",
    "load_eval_set",
    "match_classes",
    "resolve_device",
    "run_views",
    "save_table3",
    "table3_rows",
    "topk_correct",
]
