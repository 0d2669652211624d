"""Readers for probabilities saved by another tool and the label maps they are scored against.

Used by :mod:`rankseg.engine.probs_eval` (``python evaluate_probs.py probs=DIR labels=DIR ...``).

**Cases.** One file per case in each folder (not recursive). The case id is the file name without its suffix:
``case_0001.npz`` (probabilities) pairs with ``case_0001.nii.gz`` (label), as nnU-Net v2 names its outputs and
its ``labelsTr``/``labelsTs`` files; ``img7.npy`` pairs with ``img7.png``. Other files are ignored (nnU-Net's
predicted segmentations, ``.pkl``, ``.json``).

**Probability files** hold one array of layout (C, *S), probabilities or logits, any float dtype (read as
float32 for the rules, like the evaluation of a network):

* ``.npy``: the array (``allow_pickle=False``);
* ``.npz``: the array under the key ``probabilities`` (what nnU-Net v2's ``--save_probabilities`` writes), or
  the archive's only array;
* ``.pt``: a tensor, or a dict holding one (key ``probabilities`` or the only entry), read with
  ``torch.load(..., weights_only=True)``.

nnU-Net writes a ``.pkl`` of properties beside each ``.npz``. It is a pickle, so it is never unpickled: only its
opcodes are listed (:func:`pickletools.genops` builds no object and runs nothing) to see whether the case was
read by a reorienting reader (``NibabelIOWithReorient`` stores ``reoriented_affine``,
``SimpleITKIOWithReorient`` ``original_orientation``); then the probabilities are in the reoriented voxel order
and the label is reoriented the same way before scoring. Nothing else in it is used (spacing does not enter a
voxel-count Dice; the probabilities are already at the original image's shape).

**Label files**: ``.png`` (a single-channel index map: modes L, P, I;16, I, 1), ``.npy`` (an integer array) and
NIfTI ``.nii``/``.nii.gz`` read with nibabel. nnU-Net's arrays are in SimpleITK's order (z, y, x), the reverse
of nibabel's (x, y, z) (``nnunetv2.imageio.NibabelIO`` transposes by (2, 1, 0) for the same reason), so NIfTI
labels are reversed axis for axis (``nifti_order="zyx"``, the default); ``nifti_order="xyz"`` keeps nibabel's
order for tools that save probabilities as (C, x, y, z). Probabilities with one more spatial axis than the
label whose first spatial axis has size 1 (nnU-Net's 2-D layout (C, 1, H, W) for PNG cases) are scored as
(C, H, W).

Every problem with a file raises :class:`ProbFileError` (a :class:`~rankseg.data.DatasetLayoutError`, so the
entrypoints print one message and exit with status 2) naming the file.
"""

from __future__ import annotations

import hashlib
import pickle
import pickletools
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rankseg.data.base import DatasetLayoutError

__all__ = [
    "LABEL_SUFFIXES",
    "NIFTI_ORDERS",
    "PROB_SUFFIXES",
    "Case",
    "ProbFileError",
    "case_files",
    "digest",
    "file_sha256",
    "match_cases",
    "nnunet_reorientation",
    "read_label",
    "read_probs",
]

PROB_SUFFIXES: tuple[str, ...] = (".npy", ".npz", ".pt")
LABEL_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".png", ".npy")
NIFTI_ORDERS: tuple[str, ...] = ("zyx", "xyz")
_PNG_MODES = ("L", "P", "I;16", "I", "1")
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: What a damaged, truncated or foreign file can raise from numpy, torch, PIL, nibabel or SimpleITK readers.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    EOFError,
    RuntimeError,
    KeyError,
    AttributeError,
    SyntaxError,
    zipfile.BadZipFile,
    zlib.error,
    pickle.UnpicklingError,
    Image.DecompressionBombError,
)
_LISTED = 5  # names listed in a message before "... (N in all)"


class ProbFileError(DatasetLayoutError):
    """A probability or label folder or file that cannot be evaluated; the message names the file(s) and the fix."""


@dataclass(frozen=True)
class Case:
    """One case: its id, its probability file, its label file and nnU-Net's properties file (or None)."""

    case_id: str
    probs: Path
    label: Path
    properties: Path | None


def _few(names: list[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _LISTED else "")


def _case_id(path: Path, suffixes: tuple[str, ...]) -> str | None:
    name = path.name
    for suffix in suffixes:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def case_files(folder: Path, suffixes: tuple[str, ...], what: str, key: str) -> dict[str, Path]:
    """``{case id: file}`` of the files in ``folder`` that end in one of ``suffixes`` (sorted by case id).

    Raises:
        ProbFileError: the folder is missing, holds no such file, or two files share a case id.
    """
    if not folder.is_dir():
        problem = "is a file, not a folder" if folder.exists() else "does not exist"
        raise ProbFileError(f"{key}={folder}: the {what} folder {problem}; point {key}= at the folder of {what} files")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        case = _case_id(path, suffixes) if path.is_file() else None
        if case is None:
            continue
        if case in found:
            raise ProbFileError(
                f"{folder}: two {what} files for case {case!r}: {found[case].name} and {path.name}; keep one"
            )
        found[case] = path
    if not found:
        others = sorted({"".join(p.suffixes[-2:]) or p.name for p in folder.iterdir() if p.is_file()})
        hint = f" (it holds {', '.join(others[:8])} files)" if others else " (it is empty)"
        if what == "probability" and any(s in (".nii.gz", ".nii", ".png") for s in others):
            hint += "; nnU-Net writes probabilities only with --save_probabilities"
        raise ProbFileError(f"{key}={folder}: no {what} files ({', '.join(suffixes)}) in the folder{hint}")
    return dict(sorted(found.items()))


def match_cases(probs_dir: Path, labels_dir: Path, partial: bool = False) -> tuple[list[Case], list[str]]:
    """Pair the probability files of ``probs_dir`` with the label files of ``labels_dir`` by case id.

    Returns:
        The cases (sorted by id) and the ids of labels without probabilities (empty unless ``partial``).

    Raises:
        ProbFileError: a missing or empty folder; probabilities without a label (always); labels without
            probabilities (unless ``partial``).
    """
    probs = case_files(probs_dir, PROB_SUFFIXES, "probability", "probs")
    labels = case_files(labels_dir, LABEL_SUFFIXES, "label", "labels")
    orphans = [probs[c].name for c in probs if c not in labels]
    if orphans:
        raise ProbFileError(
            f"{len(orphans)} probability file(s) in {probs_dir} have no label file in {labels_dir}: {_few(orphans)}. "
            f"A case's files share their name up to the suffix (case_0001.npz <-> case_0001.nii.gz or .png/.npy); "
            "add the labels or remove those files"
        )
    unscored = [labels[c].name for c in labels if c not in probs]
    if unscored and not partial:
        raise ProbFileError(
            f"{len(unscored)} label file(s) in {labels_dir} have no probabilities in {probs_dir}: {_few(unscored)}. "
            "Add their probabilities, or score only the cases that have them with partial=true"
        )
    cases = []
    for case, path in probs.items():
        pkl = path.with_suffix(".pkl")
        cases.append(Case(case, path, labels[case], pkl if path.suffix == ".npz" and pkl.is_file() else None))
    return cases, unscored


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def digest(entries: dict[str, str]) -> str:
    """SHA-256 over ``name<TAB>sha256<LF>`` lines of ``{file name: sha256 of its bytes}``, sorted by name."""
    text = "".join(f"{name}\t{sha}\n" for name, sha in sorted(entries.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_error(path: Path, what: str, err: BaseException) -> ProbFileError:
    reason = str(err).replace(f"'{path}'", "").replace(str(path), "").strip(" :") or type(err).__name__
    return ProbFileError(
        f"{path}: cannot read this {what} file ({type(err).__name__}: {reason[:300]}); it is damaged, truncated "
        "or not in a supported format. Re-export it, or remove the case from both folders"
    )


def read_probs(path: Path) -> torch.Tensor:
    """The array of a probability file as a tensor (C, *S) of its stored float dtype, unvalidated in value (see the
    module docstring).

    Raises:
        ProbFileError: unreadable file, no single array in it, not a float array, fewer than 2 spatial axes.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".pt":
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict):
                tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
                obj = obj.get("probabilities", next(iter(tensors.values())) if len(tensors) == 1 else obj)
            if not isinstance(obj, torch.Tensor):
                raise ProbFileError(
                    f"{path}: holds a {type(obj).__name__}, not a tensor (or a dict with one tensor, or the key "
                    "'probabilities'); save the (C, *S) tensor itself with torch.save(probs, path)"
                )
            array = obj
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.files)
                if "probabilities" in keys:
                    array = archive["probabilities"]
                elif len(keys) == 1:
                    array = archive[keys[0]]
                else:
                    raise ProbFileError(
                        f"{path}: an .npz with arrays {keys or 'none'}; expected the key 'probabilities' (nnU-Net's "
                        "--save_probabilities) or exactly one array"
                    )
        else:
            array = np.load(path, allow_pickle=False)
    except ProbFileError:
        raise
    except _READ_ERRORS as err:
        raise _read_error(path, "probability", err) from None
    if isinstance(array, np.ndarray):
        if array.dtype.kind != "f":
            raise ProbFileError(
                f"{path}: holds {array.dtype} values; expected probabilities or logits as floats, layout (C, *S)"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    else:
        tensor = array
    if tensor.dtype not in _FLOAT_DTYPES:
        raise ProbFileError(
            f"{path}: holds {str(tensor.dtype).removeprefix('torch.')} values; expected probabilities or logits as "
            "floats, layout (C, *S)"
        )
    if tensor.dim() < 3:
        raise ProbFileError(
            f"{path}: array of shape {tuple(tensor.shape)}; expected (C, *S) with 2 or 3 spatial axes, e.g. "
            "(C, H, W) or nnU-Net's (C, z, y, x)"
        )
    return tensor


def nnunet_reorientation(properties: Path) -> str | None:
    """``"nibabel"`` or ``"sitk"`` if nnU-Net's properties file says that a reorienting reader read the case,
    else None. The pickle is never loaded: only the string arguments of its opcodes are looked at.

    Raises:
        ProbFileError: the file is not a readable pickle stream.
    """
    try:
        data = properties.read_bytes()
        strings = {arg for _, arg, _ in pickletools.genops(data) if isinstance(arg, str)}
    except (OSError, ValueError, EOFError) as err:
        raise _read_error(properties, "nnU-Net properties (.pkl)", err) from None
    if "reoriented_affine" in strings:
        return "nibabel"
    if "original_orientation" in strings:
        return "sitk"
    return None


def _integral(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype == bool:
        return array.astype(np.int64)
    if array.dtype.kind in "iu":
        return array
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or not np.array_equal(array, np.round(array)):
            raise ProbFileError(f"{path}: label values are not whole numbers; expected class indices")
        return array.astype(np.int64)
    raise ProbFileError(f"{path}: label array of dtype {array.dtype}; expected integer class indices")


def _read_nifti(path: Path, nifti_order: str, reorient: str | None) -> np.ndarray:
    if reorient == "sitk":
        try:
            import SimpleITK as sitk
        except ImportError:
            raise ProbFileError(
                f"{path}: its case was read by nnU-Net's SimpleITKIOWithReorient, so the label must be reoriented "
                "the same way, which needs SimpleITK (pip install SimpleITK)"
            ) from None
        image = sitk.DICOMOrient(sitk.ReadImage(str(path)), "RAS")
        array = sitk.GetArrayFromImage(image)  # already SimpleITK's (z, y, x)
        return array if nifti_order == "zyx" else array.transpose(tuple(range(array.ndim))[::-1])
    try:
        import nibabel
        from nibabel.orientations import io_orientation
    except ImportError:
        raise ProbFileError(
            f"{path}: reading NIfTI labels needs nibabel: pip install nibabel (or pip install -e '.[integrations]')"
        ) from None
    image = nibabel.load(path)
    if reorient == "nibabel":
        image = image.as_reoriented(io_orientation(image.affine))
    array = np.asanyarray(image.dataobj)
    return array.transpose(tuple(range(array.ndim))[::-1]) if nifti_order == "zyx" else array


def read_label(path: Path, nifti_order: str = "zyx", reorient: str | None = None) -> np.ndarray:
    """A label file as an integer array (see the module docstring for formats and axis order).

    Args:
        path: ``.png``, ``.npy``, ``.nii`` or ``.nii.gz``.
        nifti_order: ``"zyx"`` (nnU-Net/SimpleITK order, nibabel's axes reversed) or ``"xyz"`` (nibabel's).
        reorient: ``"nibabel"`` or ``"sitk"``: reorient a NIfTI label as nnU-Net's reorienting readers do
            (from :func:`nnunet_reorientation`).

    Raises:
        ProbFileError: unreadable file, a PNG that is not an index map, values that are not whole numbers.
    """
    name = path.name.lower()
    try:
        if name.endswith((".nii", ".nii.gz")):
            array = _read_nifti(path, nifti_order, reorient)
        elif name.endswith(".png"):
            with Image.open(path) as im:
                if im.mode not in _PNG_MODES:
                    raise ProbFileError(
                        f"{path}: label PNG has mode {im.mode!r}; expected a single-channel map of class indices "
                        f"(modes {', '.join(_PNG_MODES)}), not colours"
                    )
                array = np.array(im)
        else:
            array = np.load(path, allow_pickle=False)
    except ProbFileError:
        raise
    except _READ_ERRORS as err:
        raise _read_error(path, "label", err) from None
    except Exception as err:  # nibabel's ImageFileError and friends derive from Exception only
        if type(err).__module__.split(".")[0] not in ("nibabel", "SimpleITK"):
            raise
        raise _read_error(path, "label", err) from None
    return _integral(np.asarray(array), path)
