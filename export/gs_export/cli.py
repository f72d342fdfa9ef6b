"""``gs-export``: write models/<name>/ (per-block forward + VJP ONNX graphs and manifest.json)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import torch

from gs_onnx.cli.common import OneLineCommand, OneLineGroup, examples, version_option

from .architectures import ARCHITECTURES, build
from .checkpoints import load_digiface, load_generator
from .exporter import default_recommended, export_generator


def one_line(fn):
    """Input errors of an export command end in one ``error:`` line and exit 2 (torch and onnx raise many
    types for a bad checkpoint, key map or config)."""
    import functools

    from gs_onnx.errors import GSError

    @functools.wraps(fn)
    def wrapper(*a, **k):
        try:
            return fn(*a, **k)
        except Exception as e:  # noqa: BLE001 - torch/onnx/pickle raise many types for bad input files
            if isinstance(e, (SystemExit, click.exceptions.Exit)):
                raise
            msg = " ".join(str(e).split()) or type(e).__name__
            if not isinstance(e, GSError):
                msg = f"{type(e).__name__}: {msg}"
            click.echo(f"error: {msg[:400]}", err=True)
            sys.exit(2)

    return wrapper


def _progress(label):
    def cb(k, d):
        click.echo(f"{label}: exporting and checking block {k + 1}/{d}", err=True)
    return cb


@click.group(cls=OneLineGroup, epilog=examples(
    "gs-export checkpoint --arch dcgan --checkpoint G.pth --name my-dcgan -o models/my-dcgan",
    "gs-export untrained --arch began --seed 0 -o /tmp/began-untrained",
    "gs-export upgrade models/dcgan"))
@version_option
def main():
    """Export generators to gs-onnx model folders (needs torch, onnx, onnxscript)."""


@main.command(cls=OneLineCommand)
@click.option("--arch", type=click.Choice(sorted(ARCHITECTURES)), required=True)
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--key", default=None, help="Nested key of the state_dict inside the checkpoint (a.b).")
@click.option("--key-map", default=None, help="'dcgan-tutorial' or a JSON file {checkpoint key: our key}.")
@click.option("--config", "config_json", default="{}", help="Architecture keywords as JSON.")
@click.option("--name", required=True)
@click.option("-o", "--output", "--out", "out", type=click.Path(file_okay=False), required=True, help="Model folder to write.")
@click.option("--provenance", "prov_json", default="{}", help="JSON object: weights source, data, licence.")
@click.option("--cut", type=int, default=None, help="Recommended cut (default: the paper's).")
@one_line
def checkpoint(arch, checkpoint, key, key_map, config_json, name, out, prov_json, cut):
    """Export a state_dict checkpoint of ARCH (loaded with weights_only=True)."""
    gen = load_generator(arch, json.loads(config_json), checkpoint, key, key_map)
    rec = default_recommended(arch)
    if cut is not None:
        rec["cut"] = cut
    prov = {"weights": str(checkpoint), **json.loads(prov_json)}
    export_generator(gen, out, name, provenance=prov, recommended=rec, progress=_progress(name))
    click.echo(f"wrote {out}")


@main.command(cls=OneLineCommand)
@click.option("--wheel", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A downloaded gan_face_generate-1.1.1 wheel (default: pip download it).")
@click.option("-o", "--output", "--out", "out", type=click.Path(file_okay=False), default="models/dcgan-digiface", show_default=True)
@one_line
def digiface(wheel, out):
    """Import the DigiFace-1M DCGAN of gan-face-generate==1.1.1 (MIT) as models/dcgan-digiface."""
    gen, prov = load_digiface(wheel)
    export_generator(gen, out, "dcgan-digiface", provenance=prov, progress=_progress("dcgan-digiface"))
    click.echo(f"wrote {out}")


@main.command(cls=OneLineCommand)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--name", required=True)
@click.option("-o", "--output", "--out", "out", type=click.Path(file_okay=False), required=True, help="Model folder to write.")
@click.option("--provenance", "prov_json", default="{}", help="Extra provenance fields (JSON object).")
@one_line
def run(run_dir, name, out, prov_json):
    """Export a gs-train run folder (generator.pt + train.json)."""
    rec = json.loads((Path(run_dir) / "train.json").read_text())
    gen = load_generator(rec["arch"], rec["config"], Path(run_dir) / "generator.pt")
    train = {k: v for k, v in rec.items() if k != "losses"}
    losses = rec.get("losses", [])
    train["final_losses"] = losses[-1] if losses else None
    prov = {"weights": f"trained by gs-onnx's own code (gs-train {rec['arch']})",
            "licence": "the weights: same terms as the training data (CelebA: non-commercial research only)",
            "training": train, **json.loads(prov_json)}
    export_generator(gen, out, name, provenance=prov, progress=_progress(name))
    click.echo(f"wrote {out}")


@main.command(cls=OneLineCommand)
@click.option("--arch", type=click.Choice(sorted(ARCHITECTURES)), required=True)
@click.option("--config", "config_json", default="{}", help="Architecture keywords as JSON.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--name", default=None)
@click.option("-o", "--output", "--out", "out", type=click.Path(file_okay=False), required=True, help="Model folder to write.")
@one_line
def untrained(arch, config_json, seed, name, out):
    """A randomly initialised twin of ARCH (seeded; marked untrained in its manifest)."""
    torch.manual_seed(seed)
    gen = build(arch, **json.loads(config_json)).eval()
    name = name or f"{arch}-untrained-{seed}"
    prov = {"weights": f"random initialisation (torch default init, torch.manual_seed({seed}))",
            "training_data": "none", "licence": "n/a"}
    export_generator(gen, out, name, provenance=prov, untrained=True, progress=_progress(name))
    click.echo(f"wrote {out}")


@main.command(cls=OneLineCommand)
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", "--out", "out", type=click.Path(file_okay=False), default=None,
              help="Where to write  [default: replace MODEL_DIR]")
@one_line
def upgrade(model_dir, out):
    """Re-export MODEL_DIR with this exporter, its weights read back from its own graphs.

    For a model folder written by an older gs-export (e.g. VJP graphs that recompute the forward pass):
    the architecture, weights, provenance and recommended settings are kept, the graphs are rewritten
    and checked against torch again."""
    from gs_onnx.manifest import load_manifest

    from .from_onnx import torch_generator

    man = load_manifest(model_dir)
    gen = torch_generator(man)
    prov = dict(man.provenance)
    prov["upgraded_from"] = {"exported": man.raw.get("exported"), "files": man.raw.get("files")}
    export_generator(gen, out or model_dir, man.name, provenance=prov, recommended=man.recommended,
                     untrained=man.untrained, progress=_progress(man.name))
    click.echo(f"wrote {out or model_dir}")


if __name__ == "__main__":
    sys.exit(main())
