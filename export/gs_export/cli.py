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
            if isinstance(e, BrokenPipeError):  # the reader went away (| head): nothing to report
                sys.exit(1)
            msg = " ".join(str(e).split()) or type(e).__name__
            if type(e) is not ValueError and not isinstance(e, GSError):  # our own messages name the problem
                msg = f"{type(e).__name__}: {msg}"
            click.echo(f"error: {msg[:400]}", err=True)
            sys.exit(2)

    return wrapper


def _json(option: str, text: str, kind=dict):
    """An option's JSON value, or a one-line error naming the option."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{option} is not valid JSON ({e.msg} at character {e.pos}): {text[:80]}") from None
    if not isinstance(value, kind):
        raise ValueError(f"{option} must be a JSON {'object' if kind is dict else kind.__name__}: {text[:80]}")
    return value


def _range(text: str) -> tuple[float, float]:
    """'LO,HI' as two finite floats with LO < HI, or a one-line error."""
    import math

    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--output-range must be LO,HI (two numbers), got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"--output-range must be two finite numbers with LO < HI, got {text!r}")
    return lo, hi


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


@main.command(cls=OneLineCommand, epilog=examples(
    "gs-export checkpoint --arch began --config '{\"ch\": 64, \"image_size\": 64, \"skip\": false, "
    "\"output_activation\": \"tanh\"}' --checkpoint G.pt --key-map map.json --name my-began -o models/my-began",
    "gs-export checkpoint --arch dcgan --checkpoint G.pth --key netG_state_dict --key-map dcgan-tutorial "
    "--name my-dcgan -o models/my-dcgan"))
@click.option("--arch", type=click.Choice(sorted(ARCHITECTURES)), required=True)
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), required=True,
              help="A state_dict file (torch.save), loaded with weights_only=True.")
@click.option("--key", default=None, help="Nested key of the state_dict inside the checkpoint (a.b).")
@click.option("--key-map", default=None,
              help="'dcgan-tutorial', or a JSON file {checkpoint key: our key} (gs-export inspect --write-key-map).")
@click.option("--config", "config_json", default="{}", show_default=True,
              help="Architecture keywords as JSON (gs-export keys --arch ARCH lists them with their defaults).")
@click.option("--name", required=True)
@click.option("-o", "--output", "--out", "out", type=click.Path(file_okay=False), required=True, help="Model folder to write.")
@click.option("--provenance", "prov_json", default="{}", show_default=True,
              help="JSON object: weights source, data, licence.")
@click.option("--prior", type=click.Choice(["normal", "uniform", "clipped_normal"]), default=None,
              help="The latent prior the checkpoint was trained with  [default: the architecture's]")
@click.option("--output-range", "out_range", default=None, metavar="LO,HI",
              help="The image range of the generator's output, e.g. -1,1 for a model trained on images in [-1, 1] "
                   "without a final Tanh  [default: the architecture's: Tanh -1,1, otherwise 0,1]")
@click.option("--recommended-cut", "--cut", "cut", type=int, default=None,
              help="The model's recommended cut  [default: the paper's for the architecture, inside the model]")
@one_line
def checkpoint(arch, checkpoint, key, key_map, config_json, name, out, prov_json, prior, out_range, cut):
    """Export a state_dict checkpoint of ARCH (loaded with weights_only=True)."""
    from gs_onnx.generator.manifest import sha256_file

    out_range = _range(out_range) if out_range is not None else None
    provenance = _json("--provenance", prov_json)
    gen = load_generator(arch, _json("--config", config_json), checkpoint, key, key_map)
    if prior is not None:
        gen.latent_prior = prior
    if out_range is not None:
        gen.output_range = out_range
    rec = default_recommended(arch, gen.depth, cut)
    prov = {"weights": Path(checkpoint).name, "weights_sha256": sha256_file(Path(checkpoint)), **provenance}
    export_generator(gen, out, name, provenance=prov, recommended=rec, progress=_progress(name))
    click.echo(f"wrote {out}")


@main.command(cls=OneLineCommand, epilog=examples("gs-export keys --arch dcgan",
                                                  "gs-export keys --arch began --config '{\"ch\": 64, \"skip\": false}'"))
@click.option("--arch", type=click.Choice(sorted(ARCHITECTURES)), required=True)
@click.option("--config", "config_json", default="{}", show_default=True, help="Architecture keywords as JSON.")
@one_line
def keys(arch, config_json):
    """The --config keys of ARCH with their defaults, and the state_dict keys and shapes it expects."""
    from .checkpoints import config_keys, expected_keys

    config = _json("--config", config_json)
    known = config_keys(arch)
    bad = sorted(set(config) - {n for n, _, _ in known})
    if bad:
        raise ValueError(f"--config key {bad[0]!r} is not one of {arch}'s: {', '.join(n for n, _, _ in known)}")
    expected = expected_keys(arch, config)  # builds the architecture: a bad value fails here, before any output
    click.echo(f"{arch} --config keys (value, default; meaning):")
    for name, default, meaning in known:
        value = f"{json.dumps(config[name])} (default {json.dumps(default)})" if name in config else \
            f"{json.dumps(default)} (default)"
        click.echo(f"  {name}: {value}; {meaning}")
    click.echo("state_dict keys (shape):")
    for k, s in expected.items():
        click.echo(f"  {k} {list(s)}")


@main.command(cls=OneLineCommand, epilog=examples("gs-export inspect G.pt",
                                                  "gs-export inspect G.pth --key netG_state_dict --write-key-map map.json"))
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", default=None, help="Nested key of the state_dict inside the checkpoint (a.b).")
@click.option("--write-key-map", "write_map", type=click.Path(dir_okay=False), default=None,
              help="Write the first proposal's key map here (a JSON file for --key-map).")
@one_line
def inspect(checkpoint, key, write_map):
    """List a checkpoint's tensors (safe loading only) and propose architecture settings and a key map."""
    from .checkpoints import _tensors, propose

    shapes = _tensors(checkpoint, key)
    click.echo(f"{checkpoint}: {len(shapes)} tensors")
    for k, s in shapes.items():
        click.echo(f"  {k} {list(s)}")
    props = propose(shapes)
    if not props:
        click.echo("no architecture of gs-export fits these tensors in order and shape: compare with "
                   "gs-export keys --arch ARCH and write a key map by hand")
        return
    for p in props:
        click.echo(f"proposal: --arch {p['arch']} --config '{json.dumps(p['config'])}'"
                   + (f" ({p['note']})" if p["note"] else "") + f"; {len(p['key_map'])} keys renamed")
    if write_map:
        Path(write_map).write_text(json.dumps(props[0]["key_map"], indent=1) + "\n")
        click.echo(f"wrote the key map of the first proposal to {write_map}")


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
            "training": train, **_json("--provenance", prov_json)}
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
    gen = build(arch, **_json("--config", config_json)).eval()
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
    from gs_onnx.generator.manifest import load_manifest

    from .from_onnx import torch_generator

    man = load_manifest(model_dir)
    gen = torch_generator(man)
    prov = dict(man.provenance)
    prov["upgraded_from"] = {"exported": man.raw.get("exported"), "files": man.raw.get("files")}
    export_generator(gen, out or model_dir, man.name, provenance=prov, recommended=man.recommended,
                     untrained=man.untrained, progress=_progress(man.name))
    click.echo(f"wrote {out or model_dir}")


@main.command(cls=OneLineCommand, epilog=examples("gs-export denoiser runs/denoiser -o models/priors/unet-celeba"))
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--name", default="unet-celeba", show_default=True)
@click.option("-o", "--output", "--out", "out", type=click.Path(file_okay=False), required=True,
              help="Denoiser folder to write (models/priors/NAME to ship it).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty folder.")
@one_line
def denoiser(run_dir, name, out, overwrite):
    """Export a gs-train denoiser run (denoiser.pt + train.json) as denoiser.onnx and manifest.json, checked
    against torch."""
    from .denoiser import export

    man = export(run_dir, out, name, overwrite=overwrite)
    click.echo(f"wrote {out} ({man['architecture']['parameters']} parameters, torch/ONNX max difference "
               f"{man['check']['max_abs_diff']:.1e})")


if __name__ == "__main__":
    sys.exit(main())


def _add_recovery() -> None:
    """``gs-export recovery``: torch-free (gs_onnx.cli.recovery); listed here so that ``gs-export -h`` shows it."""
    from gs_onnx.cli.recovery import main as recovery

    main.add_command(recovery, "recovery")


_add_recovery()
