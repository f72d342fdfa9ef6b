"""The shipped JSON Schema of the manifest (gs_onnx/schema/manifest.schema.json) against the manifests that
exist: every shipped model's and a fresh export's validate; tampered ones are rejected by the schema *and*
by the runtime, so a non-Python reader that trusts the schema refuses what the runtime refuses."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from gs_onnx.errors import GSError
from gs_onnx.generator.manifest import LATENT_PRIORS, load_manifest

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "gs_onnx" / "schema" / "manifest.schema.json").read_text())
SHIPPED = sorted(p.parent.name for p in (ROOT / "models").glob("*/manifest.json"))
SHA = "0" * 64


def _validator():
    cls = jsonschema.validators.validator_for(SCHEMA)
    cls.check_schema(SCHEMA)
    return cls(SCHEMA)


def test_the_schema_is_a_valid_json_schema_and_ships_in_the_package():
    _validator()
    from importlib import resources
    assert json.loads(resources.files("gs_onnx").joinpath("schema/manifest.schema.json").read_text()) == SCHEMA
    assert SCHEMA["properties"]["latent"]["properties"]["prior"]["enum"] == list(LATENT_PRIORS)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_manifest_validates(name):
    raw = json.loads((ROOT / "models" / name / "manifest.json").read_text())
    _validator().validate(raw)


@pytest.mark.parametrize("name", SHIPPED)
def test_no_machine_specific_path_in_a_shipped_manifest(name):
    """Only the fields the specification calls paths hold paths, and those are relative; nothing else looks
    like a path of the machine that exported the model."""
    text = (ROOT / "models" / name / "manifest.json").read_text()
    for marker in ('"/', "/home/", "/work/", "/tmp/", "/root/", "C:\\\\", "~/", "../"):
        assert marker not in text, (name, marker)


def test_a_fresh_export_validates(tiny_models):
    for key, (_, folder) in tiny_models.items():
        _validator().validate(json.loads((Path(folder) / "manifest.json").read_text()))


def _set(path, value):
    def edit(raw):
        d = raw
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


# Each: a tampering (as tests/test_bad_inputs.py makes them, plus paths a hostile folder would hold) that the
# schema must reject and the runtime must refuse.
TAMPERED = {
    "negative dimension": _set(("tensors", "h2"), [256, -8, 8]),
    "zero dimension": _set(("tensors", "h2"), [256, 0, 8]),
    "cut as a string": _set(("recommended", "cut"), "1"),
    "cut as a boolean": _set(("recommended", "cut"), True),
    "max_iter as a string": _set(("recommended", "optimizer", "max_iter"), "500"),
    "holdout of 1": _set(("recommended", "stopping", "holdout"), 1.0),
    "unknown stopping rule": _set(("recommended", "stopping", "rule"), "forever"),
    "no blocks": _set(("blocks",), []),
    "unknown prior": _set(("latent", "prior"), "cauchy"),
    "format version 2": _set(("format_version",), 2),
    "not a gs-onnx manifest": _set(("format",), "something-else"),
    "file outside": lambda raw: raw["files"].update({"../outside.bin": SHA}),
    "absolute file": lambda raw: raw["files"].update({"/etc/hostname": SHA}),
    "drive-letter file": lambda raw: raw["files"].update({"C:/Windows/x.bin": SHA}),
    "backslash file": lambda raw: raw["files"].update({"sub\\x.bin": SHA}),
    "graph outside": _set(("blocks", 1, "forward", "file"), "../../block1.fwd.onnx"),
    "absolute graph": _set(("blocks", 1, "vjp", "file"), "/tmp/block1.vjp.onnx"),
    "output_range of one number": _set(("output_range",), [0.0]),
    "files not a map": _set(("files",), ["block0.fwd.onnx"]),
}


@pytest.mark.parametrize("what", sorted(TAMPERED))
def test_tampered_manifests_are_rejected_by_the_schema_and_the_runtime(what, tmp_path):
    raw = json.loads((ROOT / "models" / "dcgan" / "manifest.json").read_text())
    bad = copy.deepcopy(raw)
    TAMPERED[what](bad)
    assert json.dumps(bad) != json.dumps(raw)
    with pytest.raises(jsonschema.ValidationError):
        _validator().validate(bad)
    (tmp_path / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(GSError):
        load_manifest(tmp_path, verify=False)
