"""Per-case radiomic extraction with pyradiomics as the engine, preprocessing the image once per case.

pyradiomics' ``RadiomicsFeatureExtractor.execute`` reloads, re-normalises and hashes the image for every
mask. Here one case is prepared once (label-map cast, z-score normalisation, filtered images when they do
not depend on the mask) and then, per mask, the remaining steps of ``execute`` run with pyradiomics' own
functions in the same order (``imageoperations.resampleImage``/``checkMask``/``resegmentMask``/
``cropToTumorMask`` and the extractor's ``computeShape``/``computeFeatures``), so values are bit-identical
to ``execute(image, mask, label=v)`` with the same parameters (tested). Only the provenance block
(``additionalInfo``: image/mask SHA1 hashes, voxel statistics) is skipped; the table keeps settings hash,
versions and voxel counts instead.

Output (contract C5): one row per case x structure x level with columns
case_id, structure, level, n_voxels, status ("ok"|"error"), reason, settings_hash, pyradiomics_version,
then one column per feature with pyradiomics' names (``original_glcm_Contrast`` ...).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import radiomics
import SimpleITK as sitk
from pykwalify.compat import yml as pyk_yml
from pykwalify.errors import SchemaError
from radiomics import featureextractor, imageoperations
from ruamel.yaml.error import YAMLError
from scipy import ndimage

from ParaspinalLBPCore.errors import BadInputError, MissingInputError
from ParaspinalRadiomicsLib.inputs import Levels, as_label_map, check_finite, match_mask_geometry
from ParaspinalRadiomicsLib.preset_files import PRESETS_DIR, available_presets

log = logging.getLogger(__name__)
META_COLUMNS = [
    "case_id",
    "structure",
    "level",
    "n_voxels",
    "status",
    "reason",
    "settings_hash",
    "pyradiomics_version",
]
PYRADIOMICS_VERSION = str(radiomics.__version__)
Progress = Callable[[int, int, str], None]

# Image types whose filter output depends on the mask: never cached across masks.
_MASK_DEPENDENT_FILTERS = {"LBP3D"}
# pykwalify (pyradiomics' schema check and YAML reader) parses with one module-level ruamel parser that is
# not thread-safe: two threads building extractors at once (Dask workers are threads) can fail with
# IndexError/ComposerError. Parameter loading is serialised.
_PARSER_LOCK = threading.Lock()
_SITK_THREADS_LOCK = threading.Lock()  # guards the process-wide SimpleITK thread count (normalize_image)


@dataclass
class RadiomicsParams:
    """Validated pyradiomics parameters plus the extractor built from them and a settings hash."""

    params: dict
    source: str
    extractor: featureextractor.RadiomicsFeatureExtractor
    settings_hash: str

    @property
    def settings(self) -> dict:
        """pyradiomics settings after defaults were applied."""
        return self.extractor.settings


def _params_hash(extractor: featureextractor.RadiomicsFeatureExtractor) -> str:
    settings = {k: v for k, v in extractor.settings.items() if k != "label"}
    blob = json.dumps(
        {
            "setting": settings,
            "imageType": extractor.enabledImagetypes,
            "featureClass": extractor.enabledFeatures,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_params(params: str | Path | dict | RadiomicsParams) -> RadiomicsParams:
    """Load a preset name, a pyradiomics YAML/JSON file or a dict; validate it with pyradiomics' own schema.

    Schema errors (unknown keys, wrong types) are re-raised as ValueError with pyradiomics' message,
    which names the key and its path (e.g. ``Key 'binWidht' was not defined. Path: '/setting'``).
    """
    if isinstance(params, RadiomicsParams):
        return params
    if isinstance(params, dict):
        data, source = params, "<dict>"
    else:
        text = str(params)
        path = Path(text)
        if not path.is_file() and (PRESETS_DIR / f"{text}.yaml").is_file():
            path = PRESETS_DIR / f"{text}.yaml"
        if not path.is_file():
            raise MissingInputError(
                f"parameter file not found: {text} (presets: {', '.join(available_presets())})"
            )
        try:
            # Parse exactly as pyradiomics does (pykwalify: ruamel YAML 1.2 / json), so that e.g. ``1e-3`` is
            # the float pyradiomics would read (PyYAML's YAML 1.1 would read the string "1e-3").
            text_data = path.read_text()
            with _PARSER_LOCK:
                data = (json.loads(text_data) if path.suffix == ".json" else pyk_yml.load(text_data)) or {}
        except (json.JSONDecodeError, YAMLError) as exc:
            raise BadInputError(f"parameter file {path} is not valid YAML/JSON: {exc}") from exc
        source = str(path)
    if not isinstance(data, dict):
        raise BadInputError(
            f"parameter file {source}: expected a mapping with setting/imageType/featureClass"
        )
    try:
        with _PARSER_LOCK:
            extractor = featureextractor.RadiomicsFeatureExtractor(dict(data))
    except SchemaError as exc:
        msg = " ".join(str(getattr(exc, "msg", exc)).split())
        raise BadInputError(f"parameter file {source}: pyradiomics rejected it: {msg}") from exc
    return RadiomicsParams(dict(data), source, extractor, _params_hash(extractor))


#: pyradiomics feature classes of the protocol preset (all classes computed on the original image).
PROTOCOL_CLASSES = ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm")


def select_feature_classes(
    params: str | Path | dict | RadiomicsParams, classes: list[str]
) -> RadiomicsParams:
    """The parameters with only ``classes`` enabled (each keeps its feature list from ``params``).

    A parameter set without a ``featureClass`` section enables the protocol classes; asking for a class
    the parameters do not enable is a ValueError naming it and the parameter source.
    """
    rp = load_params(params)
    enabled = rp.params.get("featureClass") or dict.fromkeys(PROTOCOL_CLASSES)
    unknown = sorted(set(classes) - set(enabled))
    if unknown:
        raise BadInputError(f"feature classes {unknown} are not enabled in {rp.source}")
    if not classes:
        raise BadInputError(f"no feature class selected (enabled in {rp.source}: {', '.join(enabled)})")
    selected = load_params({**rp.params, "featureClass": {c: enabled[c] for c in classes}})
    return RadiomicsParams(selected.params, rp.source, selected.extractor, selected.settings_hash)


class MaskSpec(NamedTuple):
    """One region to extract: rows are named by structure and level; ``mask == label`` is the ROI."""

    structure: str
    level: str
    mask: sitk.Image
    label: int
    n_voxels: int
    bbox: tuple[slice, ...] | None = None  # numpy (z, y, x) bounding box of the ROI, for pre-cropping


@dataclass
class PreparedImage:
    """The case image after the mask-independent steps of pyradiomics' loadImage (done once)."""

    image: sitk.Image
    shared_grid: bool  # feature classes run on this very image for every mask (no resampling/preCrop)
    precrop: bool = (
        False  # cropping image+mask around the ROI first cannot change any value (see prepare_image)
    )
    filter_cache: dict[str, list] = field(default_factory=dict)


def normalize_image(image: sitk.Image, settings: dict) -> sitk.Image:
    """pyradiomics' ``imageoperations.normalizeImage`` with SimpleITK single-threaded, safe across threads.

    Normalize sums the image statistics in an internal StatisticsImageFilter, in a scheduling-dependent
    order when several threads run it, so the last bit of the normalised image (and of the features)
    would change from run to run. That inner filter takes SimpleITK's process-wide default thread
    count (the outer filter's ``SetNumberOfThreads(1)`` does not reach it), so the default is set to 1
    around the call, under a lock: cases may run in threads (Dask workers), and without it one thread's
    restore could switch another thread's normalisation back to many threads.
    """
    with _SITK_THREADS_LOCK:
        n = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
        try:
            return imageoperations.normalizeImage(image, **settings)
        finally:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)


def prepare_image(image: sitk.Image, rp: RadiomicsParams, name: str = "image") -> PreparedImage:
    """Normalise once (if enabled), exactly as ``loadImage`` does before resampling."""
    check_finite(image, name)
    s = rp.settings
    if s.get("normalize", False):
        image = normalize_image(image, s)
    resample = s.get("interpolator") is not None and s.get("resampledPixelSpacing") is not None
    # Pre-cropping around each ROI (skipping full-volume passes per mask) is exact when nothing looks
    # beyond the ROI: no filters (their output depends on the image extent) and no interpolation of the
    # image (pyradiomics only re-grids the mask when the target spacing equals the image spacing).
    only_original = set(rp.extractor.enabledImagetypes) <= {"Original"}
    same_spacing = True
    if resample:
        target = np.asarray(s["resampledPixelSpacing"], dtype=float)
        spacing = np.asarray(image.GetSpacing(), dtype=float)
        same_spacing = len(target) == len(spacing) and bool(
            np.allclose(spacing, np.where(target == 0, spacing, target))
        )
    shared = not resample and not s.get("preCrop", False)
    return PreparedImage(image, shared_grid=shared, precrop=only_original and same_spacing)


def _crop(img: sitk.Image, bbox: tuple[slice, ...], margin: int) -> sitk.Image:
    size = img.GetSize()
    lo = [max(bbox[2 - d].start - margin, 0) for d in range(3)]
    hi = [min(bbox[2 - d].stop + margin, size[d]) for d in range(3)]
    return sitk.RegionOfInterest(img, [h - lo_ for lo_, h in zip(lo, hi, strict=True)], lo)


def _as_float(value: Any) -> float:
    arr = np.asarray(value)
    if np.iscomplexobj(arr):
        return float("nan")
    return float(arr)


def extract_mask(
    rp: RadiomicsParams,
    prep: PreparedImage,
    mask: sitk.Image,
    label: int,
    bbox: tuple[slice, ...] | None = None,
) -> dict[str, float]:
    """Features of ``mask == label``: steps 1 (rest) to 6 of ``execute``, same functions, same order.

    Raises ValueError (pyradiomics' messages) when the ROI is invalid (too small, one voxel, 1D...).
    """
    ex = rp.extractor
    s = ex.settings.copy()
    s["label"] = int(label)
    image = prep.image
    if prep.precrop and bbox is not None and mask.GetDimension() == 3:
        margin = int(s.get("padDistance", 5)) + 1
        image, mask = _crop(image, bbox, margin), _crop(mask, bbox, margin)
    if s.get("voxelBased"):
        raise BadInputError("voxel-based extraction is not supported by the table extractor")
    # -- rest of loadImage (per mask): resampling or pre-cropping depend on the mask's bounding box
    if s.get("interpolator") is not None and s.get("resampledPixelSpacing") is not None:
        image, mask = imageoperations.resampleImage(image, mask, **s)
    elif s.get("preCrop", False):
        bb, corrected = imageoperations.checkMask(image, mask, **s)
        if corrected is not None:
            mask = corrected
        if bb is None:
            raise BadInputError("Mask checks failed during pre-crop")
        image, mask = imageoperations.cropToTumorMask(image, mask, bb, **s)
    # -- execute steps 2-6
    bb, corrected = imageoperations.checkMask(image, mask, **s)
    if corrected is not None:
        mask = corrected
    reseg = None
    if s.get("resegmentRange") is not None:
        reseg = imageoperations.resegmentMask(image, mask, **s)
        bb, corrected = imageoperations.checkMask(image, reseg, **s)
    reseg_shape = s.get("resegmentShape", False)
    if reseg_shape and reseg is not None:
        mask = reseg
    values: dict[str, Any] = dict(ex.computeShape(image, mask, bb, **s))
    if not reseg_shape and reseg is not None:
        mask = reseg
    for image_type, custom in ex.enabledImagetypes.items():
        args = s.copy()
        args.update(custom)
        for filtered, type_name, kwargs in _filtered_images(prep, image, mask, image_type, args, custom):
            crop_img, crop_mask = imageoperations.cropToTumorMask(filtered, mask, bb, padDistance=0)
            values.update(ex.computeFeatures(crop_img, crop_mask, type_name, **kwargs))
    return {k: _as_float(v) for k, v in values.items()}


def _filtered_images(
    prep: PreparedImage, image: sitk.Image, mask: sitk.Image, image_type: str, args: dict, custom: dict
) -> list:
    """Filtered images of one type; computed once per case when they cannot depend on the mask."""
    generator = getattr(imageoperations, f"get{image_type}Image")
    if not prep.shared_grid or image_type in _MASK_DEPENDENT_FILTERS or image_type == "Original":
        return list(generator(image, mask, **args))
    key = image_type + json.dumps(custom, sort_keys=True, default=str)
    if key not in prep.filter_cache:
        prep.filter_cache[key] = [(img, name, dict(kw)) for img, name, kw in generator(image, mask, **args)]
    out = []
    for img, name, kw in prep.filter_cache[key]:
        kw = dict(kw)
        kw["label"] = args["label"]
        out.append((img, name, kw))
    return out


_SIDE = re.compile(r"^(?P<base>.+)_(?P<side>left|right)$")


def build_mask_specs(
    labels: sitk.Image,
    label_names: dict[int, str] | None,
    levels: Levels | None = None,
    per_level: bool = False,
    per_side: bool = True,
    structures: list[str] | None = None,
) -> tuple[list[MaskSpec], list[dict]]:
    """Masks for every structure x level of a case; also rows for named labels that have no voxels.

    ``per_side=False`` merges ``X_left`` and ``X_right`` into one bilateral structure ``X``.
    ``per_level=True`` adds one slab per level (inclusive numpy-axis-0 range), beside level "all".
    """
    arr = sitk.GetArrayFromImage(labels)
    present = {int(v): int(c) for v, c in zip(*np.unique(arr, return_counts=True), strict=True) if v != 0}
    names = dict(label_names) if label_names else {}
    unnamed = [v for v in present if v not in names]
    if unnamed:
        log.warning("label value(s) %s have no name; using label_<value>", ", ".join(map(str, unnamed)))
        names.update({v: f"label_{v}" for v in unnamed})
    groups: dict[str, list[int]] = {}
    for v, name in sorted(names.items()):
        key = name
        if not per_side and (m := _SIDE.match(name)):
            key = m.group("base")
        groups.setdefault(key, []).append(v)
    wanted_missing: list[str] = []
    if structures is not None:
        wanted_missing = [st for st in structures if st not in groups]
        groups = {k: v for k, v in groups.items() if k in set(structures)}
    level_items: list[tuple[str, tuple[int, int] | None]] = [("all", None)]
    if per_level:
        if not levels:
            raise BadInputError("per-level extraction needs vertebral levels (field 'levels' of labels.json)")
        nz = arr.shape[0]
        for lev, (k0, k1) in levels.items():
            if k1 >= nz:
                raise BadInputError(
                    f"level {lev} slice range [{k0}, {k1}] exceeds the label map's {nz} slices"
                )
            level_items.append((lev, (k0, k1)))
    specs: list[MaskSpec] = []
    missing: list[dict] = []
    for lev, rng in level_items:
        if rng is None:
            lev_arr, lev_img = arr, labels
        else:
            lev_arr = np.zeros_like(arr)
            lev_arr[rng[0] : rng[1] + 1] = arr[rng[0] : rng[1] + 1]
            lev_img = _like(lev_arr, labels)
        counts = np.bincount(lev_arr.ravel())
        boxes = ndimage.find_objects(lev_arr)
        for structure, values in groups.items():
            if len(values) == 1:
                v = values[0]
                n = int(counts[v]) if v < len(counts) else 0
                mask_img, label = lev_img, v
                bbox = boxes[v - 1] if 0 < v <= len(boxes) else None
            else:
                sel = np.isin(lev_arr, values)
                n = int(np.count_nonzero(sel))
                mask_img, label = (_like(sel.astype(np.uint32), labels) if n else None), 1
                bbox = ndimage.find_objects(sel.astype(np.uint8))[0] if n else None
            if n == 0:
                where = "" if rng is None else f" in level {lev} (slices {rng[0]}-{rng[1]})"
                why = "not present in the label map" if all(v not in present for v in values) else "empty"
                missing.append(
                    {
                        "structure": structure,
                        "level": lev,
                        "n_voxels": 0,
                        "reason": f"label {'+'.join(map(str, values))} ({structure}) {why}{where}",
                    }
                )
                continue
            specs.append(MaskSpec(structure, lev, mask_img, label, n, bbox))
        for st in wanted_missing:
            reason = f"structure {st} is not among the label map's names"
            missing.append({"structure": st, "level": lev, "n_voxels": 0, "reason": reason})
    return specs, missing


def _like(arr: np.ndarray, ref: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(arr.astype(np.uint32, copy=False))
    img.CopyInformation(ref)
    return img


def extract_specs(
    rp: RadiomicsParams,
    prep: PreparedImage,
    specs: list[MaskSpec],
    case_id: str,
    missing: list[dict] | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Run every mask of a case; a failing mask becomes an error row with its reason, never an exception."""
    rows: list[dict] = []
    total = len(specs)
    for i, spec in enumerate(specs):
        row = {
            "case_id": case_id,
            "structure": spec.structure,
            "level": spec.level,
            "n_voxels": spec.n_voxels,
            "status": "ok",
            "reason": "",
        }
        try:
            feats = extract_mask(rp, prep, spec.mask, spec.label, spec.bbox)
            nan = [k for k, v in feats.items() if not np.isfinite(v)]
            if nan:
                row["reason"] = f"{len(nan)} feature(s) NaN: {', '.join(nan[:5])}"
            row.update(feats)
        except Exception as exc:  # one bad mask must not stop the case
            row.update(status="error", reason=" ".join(str(exc).split()) or type(exc).__name__)
        rows.append(row)
        if progress is not None:
            progress(i + 1, total, f"{spec.structure} {spec.level}")
    for m in missing or []:
        rows.append({"case_id": case_id, **m, "status": "error"})
    return to_table(rows, rp)


def to_table(rows: list[dict], rp: RadiomicsParams) -> pd.DataFrame:
    """Rows to the C5 table: meta columns first, features in pyradiomics' order."""
    feature_cols: list[str] = []
    seen = set(META_COLUMNS)
    for r in rows:
        for k in r:
            if k not in seen:
                seen.add(k)
                feature_cols.append(k)
    df = pd.DataFrame(rows, columns=META_COLUMNS + feature_cols)
    df["settings_hash"] = rp.settings_hash
    df["pyradiomics_version"] = PYRADIOMICS_VERSION
    df["reason"] = df["reason"].fillna("")
    df["n_voxels"] = df["n_voxels"].astype(int)
    df[feature_cols] = df[feature_cols].astype(float)
    df.attrs["provenance"] = provenance(rp)
    return df


def provenance(rp: RadiomicsParams) -> dict:
    """Versions and settings that produced a table (written beside it as JSON)."""
    import pywt

    return {
        "pyradiomics": PYRADIOMICS_VERSION,
        "numpy": np.__version__,
        "SimpleITK": sitk.Version().VersionString(),
        "pywavelets": pywt.__version__,
        "settings_hash": rp.settings_hash,
        "params_source": rp.source,
        "settings": {k: v for k, v in rp.settings.items() if k != "label"},
        "imageType": rp.extractor.enabledImagetypes,
        "featureClass": rp.extractor.enabledFeatures,
    }


def extract_case(
    image: sitk.Image,
    labels: sitk.Image,
    label_names: dict[int, str] | None,
    params: str | Path | dict | RadiomicsParams,
    levels: Levels | None = None,
    per_level: bool = False,
    per_side: bool = True,
    case_id: str = "case",
    progress: Progress | None = None,
    resample_mask: bool = False,
    structures: list[str] | None = None,
) -> pd.DataFrame:
    """Every structure (x level, optionally per level slab; per side or bilateral) of one case -> C5 rows.

    ``image``: scalar SimpleITK image; ``labels``: integer label map (any integer type); ``label_names``:
    value -> structure name (None: ``label_<v>``); ``levels``: C1 level slice ranges; ``progress(done,
    total, what)`` is called after each mask. Geometry must match unless ``resample_mask`` (nearest
    neighbour onto the image grid). ``structures`` restricts the rows to these names (after left/right
    merging).
    """
    rp = load_params(params)
    labels = as_label_map(labels)
    labels = match_mask_geometry(image, labels, resample_mask, rp.settings.get("geometryTolerance"))
    specs, missing = build_mask_specs(labels, label_names, levels, per_level, per_side, structures)
    prep = prepare_image(image, rp)
    return extract_specs(rp, prep, specs, case_id, missing, progress)
