"""The built-in task metrics over a whole evaluation set; each knows whether higher is better.

Registered with `register_metric`, as a user's own metric is.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtl_core.tasks._registry import register_metric


def _class_predictions(pred: Tensor) -> Tensor:
    # One logit per sample is a binary head: positive logit means class 1.
    if pred.dim() == 1 or pred.shape[-1] == 1:
        return (pred.reshape(-1) > 0).long()
    return pred.argmax(dim=-1)


def _flat(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    pred = pred.reshape(target.shape) if pred.numel() == target.numel() else pred
    return pred.float(), target.float()


@register_metric("accuracy", higher_is_better=True)
def accuracy(pred: Tensor, target: Tensor) -> float:
    return (_class_predictions(pred) == target.reshape(-1).long()).float().mean().item()


@register_metric("macro_f1", higher_is_better=True)
def macro_f1(pred: Tensor, target: Tensor) -> float:
    """Mean over classes of F1; a class absent from both prediction and target is skipped."""
    predicted = _class_predictions(pred)
    target = target.reshape(-1).long()
    num_classes = int(max(predicted.max().item(), target.max().item())) + 1
    if pred.dim() > 1 and pred.shape[-1] > 1:
        num_classes = max(num_classes, pred.shape[-1])
    scores = []
    for c in range(num_classes):
        tp = ((predicted == c) & (target == c)).sum().item()
        fp = ((predicted == c) & (target != c)).sum().item()
        fn = ((predicted != c) & (target == c)).sum().item()
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(sum(scores) / len(scores)) if scores else 0.0


@register_metric("auc", higher_is_better=True)
def auc(pred: Tensor, target: Tensor) -> float:
    """ROC AUC of a binary task (Mann-Whitney U with average ranks for ties)."""
    score = (
        pred.reshape(-1).float()
        if pred.dim() == 1 or pred.shape[-1] == 1
        else pred[:, 1] - pred[:, 0]
    )
    label = target.reshape(-1).float()
    n_pos = label.sum().item()
    n_neg = label.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(score)
    sorted_scores = score[order]
    ranks = torch.empty_like(score, dtype=torch.float64)
    # average ranks over ties
    _, inverse, counts = torch.unique_consecutive(
        sorted_scores, return_inverse=True, return_counts=True
    )
    ends = torch.cumsum(counts, 0).double()
    starts = ends - counts.double() + 1
    avg = (starts + ends) / 2
    ranks[order] = avg[inverse]
    rank_sum = ranks[label > 0.5].sum().item()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@register_metric("mae", higher_is_better=False)
def mae(pred: Tensor, target: Tensor) -> float:
    p, t = _flat(pred, target)
    return (p - t).abs().mean().item()


@register_metric("rmse", higher_is_better=False)
def rmse(pred: Tensor, target: Tensor) -> float:
    p, t = _flat(pred, target)
    return (p - t).pow(2).mean().sqrt().item()
