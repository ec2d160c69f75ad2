"""Class-balanced subsets: the validation split, the training subset, the digits test split."""

from __future__ import annotations

import math

import torch


def stratified_split(
    labels: torch.Tensor, n_take: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into ``n_take`` class-balanced ones and the rest (both sorted).

    Each class gets its proportional share, rounded by largest remainder so the total is exact;
    members are drawn from a per-class permutation, so with one seed a smaller draw is a subset
    of a larger one.
    """
    labels = labels.cpu()
    n = len(labels)
    if not 0 <= n_take <= n:
        raise ValueError(f"cannot take {n_take} of {n} samples")
    classes, counts = torch.unique(labels, return_counts=True)
    quotas = [n_take * int(c) / n for c in counts]
    takes = [math.floor(q) for q in quotas]
    # Largest remainder; ties go to the lower class index so the result is fully determined.
    by_remainder = sorted(range(len(quotas)), key=lambda k: (takes[k] - quotas[k], k))
    for k in by_remainder[: n_take - sum(takes)]:
        takes[k] += 1
    taken, rest = [], []
    for cls, count, take in zip(classes.tolist(), counts.tolist(), takes, strict=True):
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(count, generator=generator)]
        taken.append(members[:take])
        rest.append(members[take:])
    return torch.cat(taken).sort().values, torch.cat(rest).sort().values
