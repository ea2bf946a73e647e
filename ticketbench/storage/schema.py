"""The schema of the JSON files in a run directory (meta.json, levels/level_NN.json), checked
with pydantic whenever one is read back, so that a file edited or damaged by hand is refused in
one line naming the file and the field instead of being scored or trained on."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ticketbench.config import BN_MODES, COMPILE_MODES, PRECISIONS

ANALYSIS_ARMS = ("instability", "instability-same-noise")  # the arms of instability analyses
STABLE_BELOW = 0.02  # Frankle et al. 2020: a pair is stable when its instability is below 2 percentage points

Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Percent = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]
# A level of a user's module trains under any of Lightning's precisions (the suite's tasks: PRECISIONS).
TRAINER_PRECISIONS = ("64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed")


class ValidationCurve(BaseModel):
    """A level's validations in order: the step of each, its loss and accuracy (None: not finite)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    step: list[Count]
    loss: list[Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None]
    acc: list[Fraction | None]

    @model_validator(mode="after")
    def _one_row_per_step(self) -> ValidationCurve:
        if not len(self.loss) == len(self.acc) == len(self.step):
            raise ValueError("step, loss and acc must have one value per validation")
        if any(b <= a for a, b in itertools.pairwise(self.step)):
            raise ValueError("the steps of the validations must increase")
        return self


class LevelRecord(BaseModel):
    """One finished level (accuracies as fractions; None where not measured). Further keys
    (``replicas``, a method's ``target_density_percent``, ...) are kept as they are."""

    model_config = ConfigDict(strict=True, extra="allow")

    task: str
    seed: int
    arm: str
    level: Count
    weights_remaining_percent: Annotated[float, Field(gt=0.0, le=100.0, allow_inf_nan=False)]
    layer_remaining_percent: dict[str, Percent]
    early_stop_step: Count | None
    val_loss_at_early_stop: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None
    val_acc_at_early_stop: Fraction | None
    test_acc_at_early_stop: Fraction | None
    test_acc_final: Fraction | None
    train_acc_final: Fraction | None
    start_step: Count
    steps: Count
    seconds: Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
    diverged: bool
    deterministic: bool = False
    precision: Literal[TRAINER_PRECISIONS] = "32-true"  # type: ignore[valid-type]
    compile: Literal[(*COMPILE_MODES, "by-user")] = "off"  # type: ignore[valid-type]  # by-user: a compiled module
    tf32: bool = False
    channels_last: bool = False
    validation: ValidationCurve | None = None  # absent: no validation split, or a curve not kept whole


class Meta(BaseModel):
    """meta.json: what the run is and how it was configured (further keys kept as they are)."""

    model_config = ConfigDict(strict=True, extra="allow")

    task: str
    arm: str
    seed: int
    fingerprint: Annotated[str, Field(pattern=r"^[0-9a-f]+$")]
    levels: Annotated[int, Field(ge=1)] | None = None
    first_level: Annotated[int, Field(ge=0, le=1)] | None = None
    at_levels: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] | None = None  # chosen levels
    config: dict[str, Any]
    pruned_tensors: dict[str, str] | None = None


def check(schema: type[BaseModel], data: Any, path: Path) -> dict[str, Any]:
    """``data`` if it matches ``schema``; otherwise a ValueError naming the file and the first bad field."""
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(data).__name__}")
    try:
        schema.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(map(str, first["loc"])) or "(top level)"
        raise ValueError(f"{path}: field {field!r}: {first['msg']} (found {first.get('input')!r})") from None
    return data


class PathRecord(BaseModel):
    """One analysed point of an instability analysis: the error along the linear path between
    two copies trained from the same θ_k (fractions in [0, 1]; one value per point α)."""

    model_config = ConfigDict(strict=True, extra="allow")

    task: str
    seed: int
    arm: str
    level: Count
    control: str
    rewind_step: Count
    weights_remaining_percent: Annotated[float, Field(gt=0.0, le=100.0, allow_inf_nan=False)]
    bn: Literal[("none", *BN_MODES)]  # type: ignore[valid-type]
    alphas: Annotated[list[Fraction], Field(min_length=2)]
    test_error: list[Fraction]
    train_error: list[Fraction]
    instability_test: Annotated[float, Field(ge=-1.0, le=1.0, allow_inf_nan=False)]
    instability_train: Annotated[float, Field(ge=-1.0, le=1.0, allow_inf_nan=False)]
    copy_test_acc_final: list[Fraction | None]
    copy_steps: list[Count]
    copy_diverged: list[bool]
    seconds: Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
    deterministic: bool = False
    precision: Literal[PRECISIONS] = "32-true"  # type: ignore[valid-type]
    compile: Literal[COMPILE_MODES] = "off"  # type: ignore[valid-type]
    tf32: bool = False
    channels_last: bool = False

    @model_validator(mode="after")
    def _one_error_per_alpha(self) -> PathRecord:
        if not len(self.test_error) == len(self.train_error) == len(self.alphas):
            raise ValueError("test_error, train_error and alphas must have one value per point of the path")
        return self


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN or infinity: a record stores them as null."""
    return None if value is None or not math.isfinite(value) else value
