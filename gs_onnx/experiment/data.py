"""Laying out a downloaded CelebA and COCO as the experiments read them (``gs-experiment data``).

The named data sets of the presets live under one data root (``--data-root``, ``$GS_ONNX_DATA``, else the
user data folder, :func:`gs_onnx.experiment.presets.user_data_dir`)::

    celeba_aligned/train/, celeba_aligned/test/     CelebA img_align_celeba faces (178 x 218 JPEG), as downloaded
    celeba_crops64/train/, celeba_crops64/test/     the same faces, centre 108 x 108 crop resized to 64 x 64
    coco/test/                                      COCO photos, as downloaded

CelebA's official partition is by image id: train 000001-162770, validation 162771-182637, test
182638-202599 (``list_eval_partition.txt``); ``train`` and ``test`` here take the first N ids of the train and
test partitions. The 64 px crop (left 35, top 55, 108 x 108, bilinear) is the one of this project's copy of
the crops the DCGAN was trained on: it reproduces that copy to within JPEG re-encoding (mean absolute
difference below 2/255 on 8 images checked, tests/test_data_layout.py). The 128 px models crop the aligned
faces themselves at load time (top 51, left 26, 128 x 128; :mod:`gs_onnx.io.images`).

CelebA is for non-commercial research only (its own terms); COCO images carry each their own Flickr
Creative Commons licence (the COCO terms of use). Neither is redistributed by gs-onnx.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Callable, Iterator

from ..errors import GSError

#: CelebA's official partition (list_eval_partition.txt) by image id, inclusive.
CELEBA_SPLITS = {"train": (1, 162770), "test": (182638, 202599)}
#: The 64 px crop of an aligned 178 x 218 face: (left, top, right, bottom), resized bilinearly to 64 x 64.
CROP64_BOX = (35, 55, 143, 163)
_NAME = re.compile(r"^(\d{6})\.jpg$", re.IGNORECASE)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: The largest image file read from a download (an aligned CelebA face is about 10 KB, a COCO photo 100-300 KB): a
#: member above it, or one that inflates more than MAX_RATIO times (a zip bomb), is refused before it is read.
MAX_IMAGE_BYTES = 64 << 20
MAX_RATIO = 200


def _member_reader(zf: zipfile.ZipFile, info: zipfile.ZipInfo, src: Path) -> Callable[[], bytes]:
    """A function that reads one zip member, every failure of the archive (corrupt, encrypted, an unsupported
    compression, a size it lies about) a one-line GSError naming the member."""
    def read() -> bytes:
        import zlib

        try:
            with zf.open(info) as f:
                data = f.read(MAX_IMAGE_BYTES + 1)
        except RuntimeError as e:   # encrypted members
            raise GSError(f"--celeba {src}: {info.filename} cannot be read ({e})".splitlines()[0]) from None
        except NotImplementedError as e:
            raise GSError(f"--celeba {src}: {info.filename} uses a compression zipfile cannot read ({e})") from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
            raise GSError(f"--celeba {src}: {info.filename} is corrupt ({e})".splitlines()[0]) from None
        if len(data) > MAX_IMAGE_BYTES:
            raise GSError(f"--celeba {src}: {info.filename} inflates beyond {MAX_IMAGE_BYTES >> 20} MB: not a CelebA "
                          "face (a zip bomb?)")
        return data

    if info.file_size > MAX_IMAGE_BYTES or info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise GSError(f"--celeba {src}: {info.filename} would inflate to {info.file_size} bytes from "
                      f"{info.compress_size}: not a CelebA face (a zip bomb?)")
    if info.flag_bits & 0x1:
        raise GSError(f"--celeba {src}: {info.filename} is encrypted")
    return read


def _celeba_files(src: Path) -> dict[int, Callable[[], bytes]]:
    """{CelebA id: function returning the JPEG bytes} from a folder of ``NNNNNN.jpg`` (``img_align_celeba/``
    or its parent) or from ``img_align_celeba.zip``."""
    out: dict[int, Callable[[], bytes]] = {}
    if src.is_file():
        try:
            zf = zipfile.ZipFile(src)
        except (zipfile.BadZipFile, OSError) as e:
            raise GSError(f"--celeba {src}: not a readable zip file ({e})") from None
        where: dict[int, str] = {}
        for info in zf.infolist():
            m = _NAME.match(Path(info.filename).name)
            if m and not info.is_dir():
                i = int(m.group(1))
                if i in out:
                    raise GSError(f"--celeba {src}: two files for CelebA id {i:06d} ({where[i]} and {info.filename}): "
                                  "which one is the face is not for gs-onnx to guess")
                out[i], where[i] = _member_reader(zf, info, src), info.filename
        return out
    if not src.is_dir():
        raise GSError(f"--celeba {src}: no such folder or zip file")
    folder = src / "img_align_celeba" if (src / "img_align_celeba").is_dir() else src
    for p in folder.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_file():
            out[int(m.group(1))] = (lambda q=p: _read_image_file(q, "--celeba"))
    return out


def _read_image_file(p: Path, flag: str) -> bytes:
    """The bytes of an image file of a download, bounded (:data:`MAX_IMAGE_BYTES`), read errors one line."""
    from ..io.paths import regular_file

    regular_file(p, f"{flag} image")
    if p.stat().st_size > MAX_IMAGE_BYTES:
        raise GSError(f"{flag}: {p} is {p.stat().st_size} bytes: not an image of the data set")
    try:
        return p.read_bytes()
    except OSError as e:
        raise GSError(f"{flag}: cannot read {p}: {e.strerror or e}") from None


def _checked_photo(p: Path) -> bytes:
    """A COCO photo's bytes, refused unless they decode as an image (a file named .jpg that is not one is not data)."""
    from PIL import Image, UnidentifiedImageError

    data = _read_image_file(p, "--coco")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise GSError(f"--coco: {p} is not a readable image ({e})".splitlines()[0]) from None
    return data


def _crop64(data: bytes, name: str) -> bytes:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.size != (178, 218):
                raise GSError(f"CelebA image {name} is {im.size[0]}x{im.size[1]}, not an aligned 178x218 face "
                              "(img_align_celeba)")
            small = im.convert("RGB").resize((64, 64), Image.BILINEAR, box=CROP64_BOX)
    except (UnidentifiedImageError, OSError) as e:
        raise GSError(f"CelebA image {name} is unreadable: {e}") from None
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _plan_celeba(files: dict[int, Callable[[], bytes]], counts: dict[str, int]) -> Iterator[tuple[str, str, bytes]]:
    """(split folder, file name, bytes) for every file to write: aligned copies and 64 px crops."""
    for split, n in counts.items():
        lo, hi = CELEBA_SPLITS[split]
        ids = sorted(i for i in files if lo <= i <= hi)[:n]
        if len(ids) < n:
            raise GSError(f"--celeba has {len(ids)} images of the {split} partition (ids {lo:06d}-{hi:06d}), "
                          f"fewer than the {n} asked for (--{split})")
        for i in ids:
            data = files[i]()
            name = f"{i:06d}.jpg"
            yield f"celeba_aligned/{split}", name, data
            yield f"celeba_crops64/{split}", name, _crop64(data, name)


def layout(root: str | Path, celeba: str | Path | None = None, coco: str | Path | None = None, *,
           train: int = 5000, test: int = 500, coco_images: int = 128, overwrite: bool = False,
           progress: Callable[[int, int], None] | None = None) -> dict:
    """Write the data sets under ``root`` from a downloaded CelebA (``img_align_celeba/`` or its zip) and/or a
    folder of COCO images (the first ``coco_images`` by name). Each target folder is written whole beside
    itself and then moved into place; an existing, non-empty one is refused unless ``overwrite``.
    Returns what was written (also saved as ``root/LAYOUT.json``).
    """
    if celeba is None and coco is None:
        raise GSError("nothing to lay out: give --celeba and/or --coco")
    for name, v in (("--train", train), ("--test", test), ("--coco-images", coco_images)):
        if v < 0:
            raise GSError(f"{name} must be >= 0")
    root = Path(root)
    jobs: list[tuple[str, Callable[[], Iterator[tuple[str, str, bytes]]], int]] = []
    if celeba is not None:
        files = _celeba_files(Path(celeba))
        if not files:
            raise GSError(f"--celeba {celeba}: no CelebA images (NNNNNN.jpg) found")
        counts = {k: v for k, v in (("train", train), ("test", test)) if v}
        jobs.append(("celeba", lambda: _plan_celeba(files, counts), 2 * sum(counts.values())))
    if coco is not None:
        src = Path(coco)
        if not src.is_dir():
            raise GSError(f"--coco {coco}: no such folder")
        photos = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())[:coco_images]
        if len(photos) < coco_images:
            raise GSError(f"--coco {coco} has {len(photos)} images, fewer than --coco-images {coco_images}")
        jobs.append(("coco", lambda: (("coco/test", p.name, _checked_photo(p)) for p in photos), len(photos)))
    targets = {"celeba": ["celeba_aligned/train", "celeba_aligned/test", "celeba_crops64/train",
                          "celeba_crops64/test"], "coco": ["coco/test"]}
    wanted = [t for kind, _, _ in jobs for t in targets[kind]
              if kind != "celeba" or (t.endswith("train") and train) or (t.endswith("test") and test)]
    for t in wanted:
        d = root / t
        if d.exists() and (not d.is_dir() or any(d.iterdir())) and not overwrite:
            raise GSError(f"{d} exists and is not empty: use --overwrite to replace it")
    from ..io.paths import model_folder_at
    from ..io.publish import clean_stale, staging_prefix

    home = model_folder_at(root)
    if home is not None:
        raise GSError(f"{root} {'is' if home == root.resolve() else 'lies inside'} the model folder {home}: nothing is "
                      "written into a model; give another folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        clean_stale(root)   # the staging folders of runs that were killed
        stage = Path(__import__("tempfile").mkdtemp(prefix=staging_prefix(), dir=root))
    except OSError as e:
        raise GSError(f"cannot write into {root}: {e.strerror or e}") from None
    total = sum(n for _, _, n in jobs)
    done, written = 0, {}
    try:
        for _, plan, _ in jobs:
            for folder, name, data in plan():
                d = stage / folder
                d.mkdir(parents=True, exist_ok=True)
                (d / name).write_bytes(data)
                written[folder] = written.get(folder, 0) + 1
                done += 1
                if progress is not None:
                    progress(done, total)
        for t in wanted:
            if not (stage / t).is_dir():
                continue
            final = root / t
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                shutil.rmtree(final) if final.is_dir() else final.unlink()
            os.replace(stage / t, final)
    except OSError as e:
        raise GSError(f"cannot write into {root}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    record = {"root": str(root.resolve()), "written": written,
              "celeba": None if celeba is None else {"source": str(celeba), "partition": CELEBA_SPLITS,
                                                     "crop64": {"box": CROP64_BOX, "resample": "bilinear"}},
              "coco": None if coco is None else {"source": str(coco), "images": coco_images}}
    from ..io.publish import write_atomic

    write_atomic([(root / "LAYOUT.json", (json.dumps(record, indent=1) + "\n").encode())])  # a link there is replaced,
    return record                                                                        # not written through
