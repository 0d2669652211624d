"""Helpers shared by the Transformers and SAM adapters: field access, tensor checks, sizes, working dtypes.

Everything here works on duck-typed output objects (Hugging Face ``ModelOutput`` instances, plain mappings,
simple namespaces); output families are recognised by class *name*, so no third-party package is imported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral
from typing import Any

import torch

# The dtypes accepted for logits and probabilities (same list as ``rankseg.functional.rankseg``).
SUPPORTED_PROB_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# Output classes of the SAM family in Hugging Face Transformers; they need the explicit adapters of
# :mod:`rankseg.integration.sam` (the generic semantic helper refuses them).
SAM_OUTPUT_CLASSES = frozenset(
    {
        "SamImageSegmentationOutput",
        "SamHQImageSegmentationOutput",
        "Sam2ImageSegmentationOutput",
        "Sam3ImageSegmentationOutput",
        "Sam3LiteTextImageSegmentationOutput",
    }
)

TUPLE_OUTPUTS_MESSAGE = "Tuple-style outputs are not supported. Pass structured outputs with named fields."


def get_field(outputs: Any, name: str) -> Any:
    """The value of field ``name`` of a structured output, or None when it is missing or None.

    Attribute access comes first (``ModelOutput``, dataclasses, namespaces); mappings are read by key after that.
    Tuples and lists (``return_dict=False`` outputs) carry no field names and are refused.
    """
    if isinstance(outputs, (tuple, list)):
        raise ValueError(TUPLE_OUTPUTS_MESSAGE)
    value = getattr(outputs, name, None)
    if value is None and isinstance(outputs, Mapping):
        value = outputs.get(name)
    return value


def declares_field(outputs: Any, name: str) -> bool:
    """Whether ``outputs`` declares field ``name`` at all (a mapping key, or an attribute), whatever its value."""
    return name in outputs if isinstance(outputs, Mapping) else hasattr(outputs, name)


def class_names(obj: Any) -> set[str]:
    """The names of the classes ``type(obj)`` derives from, itself included."""
    return {base.__name__ for base in type(obj).__mro__}


def is_instance_named(obj: Any, class_name: str) -> bool:
    """Whether ``obj`` is an instance of a class called ``class_name`` (matched by name along the MRO)."""
    return class_name in class_names(obj)


def check_float_dtype(tensor: torch.Tensor, name: str) -> None:
    """A real floating-point tensor (float16, bfloat16, float32 or float64)."""
    if tensor.dtype not in SUPPORTED_PROB_DTYPES:
        raise TypeError(f"`{name}` must have a real floating-point dtype.")


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """A materialised tensor (not on the meta device) without NaN or infinity."""
    if tensor.device.type == "meta":
        raise ValueError(f"`{name}` must contain materialized, finite values.")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"`{name}` must contain only finite values.")


def working_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float32, or float64 when any of ``tensors`` is float64: half types are computed in float32."""
    dtype = torch.float32
    for tensor in tensors:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def to_working(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in its working dtype (no copy when it already has it)."""
    return tensor.to(dtype=working_dtype(tensor))


def is_int_like_tensor(tensor: torch.Tensor) -> bool:
    """An integer-dtype tensor (bool, floating and complex dtypes are not)."""
    return not (tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex())


def is_sequence(value: Any) -> bool:
    """A sequence that is not a string or bytes."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def check_height_width(pair: Sequence[Any], name: str) -> tuple[int, int]:
    """Two positive Python/NumPy integers (bool refused) as an ``(int, int)`` tuple."""
    if any(isinstance(value, bool) or not isinstance(value, Integral) for value in pair):
        raise TypeError(f"Each `{name}` height and width must be an integer.")
    if any(value <= 0 for value in pair):
        raise ValueError(f"Each `{name}` height and width must be positive.")
    return int(pair[0]), int(pair[1])
