"""Class-label conditions: ``--classes`` parsed, the null class, and the default evenly spaced subset of a
large label set."""
from __future__ import annotations

import torch

from ..errors import UsageError
from .conditions import ConditionSet


def parse_class_spec(spec: str, num_classes: int) -> list[int]:
    """Parse ``"0-9,12"`` into sorted unique class ids, each checked against ``num_classes``."""
    ids: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(p) for p in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                ids.update(range(lo, hi + 1))
            else:
                ids.add(int(part))
        except ValueError:
            raise UsageError(f"--classes: cannot read '{part}'; write class ids and ranges like 0-9,12") from None
    if not ids:
        raise UsageError("--classes selects no class; write class ids and ranges like 0-9,12")
    bad = sorted(i for i in ids if i < 0 or i >= num_classes)
    if bad:
        raise UsageError(f"--classes: class {bad[0]} is out of range; the model has classes 0-{num_classes - 1}")
    return sorted(ids)


def class_conditions(num_class_embeds: int, spec: str | None = None, null_class: int | None = None) -> ConditionSet:
    """Class-label conditions. By default the null class is the last embedding index."""
    notes = []
    if null_class is None:
        null_class = num_class_embeds - 1
        notes.append(
            f"null class assumed to be {null_class}, the last of {num_class_embeds} embeddings; "
            "pass --null-class N if the model used another"
        )
        null_source = f"class {null_class} (assumed: last embedding index)"
    else:
        null_source = f"class {null_class} (--null-class)"
    if not 0 <= null_class < num_class_embeds:
        raise UsageError(f"--null-class {null_class} is out of range; the model has {num_class_embeds} class embeddings")
    real = [c for c in range(num_class_embeds) if c != null_class]
    if spec is None and len(real) > CLASS_SUBSET_LIMIT:
        return _class_subset(real, null_class, null_source, notes)
    every = spec is not None and spec.strip().lower() == "all"
    ids = real if spec is None or every else parse_class_spec(spec, num_class_embeds)
    if null_class in ids:
        raise UsageError(f"--classes includes the null class {null_class}; leave it out or set --null-class")
    if not ids:
        raise UsageError("the model has no class besides the null class; nothing to scan")
    return ConditionSet(
        kind="class",
        values=torch.tensor(ids, dtype=torch.long),
        null=torch.tensor([null_class], dtype=torch.long),
        labels=tuple(f"class {c}" for c in ids),
        source="all classes" if spec is None else f"--classes {spec}",
        null_source=null_source,
        notes=tuple(notes),
        complete=len(ids) == len(real),
        universe=torch.tensor(real, dtype=torch.long),
    )


#: a model with more classes than this (besides the null class) is scanned on an evenly spaced subset of
#: this many by default; ``--classes all`` scans every class, ``--classes 0-9,12`` the ones named
CLASS_SUBSET_LIMIT = 32


def evenly_spaced(ids: list[int], count: int) -> list[int]:
    """``count`` of ``ids`` at even spacing, the first included: ids[floor(i * len / count)]."""
    return [ids[(i * len(ids)) // count] for i in range(count)]


def _class_subset(real: list[int], null_class: int, null_source: str, notes: list[str]) -> ConditionSet:
    """The default condition set of a large label set: CLASS_SUBSET_LIMIT evenly spaced classes. The
    null-branch test then compares the null with these (a sample of the classes, as for images or
    embeddings), so that no stage runs over every class."""
    ids = evenly_spaced(real, CLASS_SUBSET_LIMIT)
    what = f"an evenly spaced subset: {len(ids)} of the {len(real)} classes"
    notes = notes + [f"scanned {what} ({ids[0]}, {ids[1]}, ..., {ids[-1]}); --classes all scans every class"]
    return ConditionSet(
        kind="class",
        values=torch.tensor(ids, dtype=torch.long),
        null=torch.tensor([null_class], dtype=torch.long),
        labels=tuple(f"class {c}" for c in ids),
        source=f"{what} (--classes all scans every class)",
        null_source=null_source,
        notes=tuple(notes),
        subset_of=len(real),
    )
