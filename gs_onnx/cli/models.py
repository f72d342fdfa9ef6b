"""``gs-models``: the installed models, their cuts and latent shapes."""
from __future__ import annotations

import json

import click

from ..generator import registry
from ..errors import GSError
from .common import OneLineCommand, examples, models_dir_option, one_line_errors, version_option


@click.command(cls=OneLineCommand, epilog=examples(
    "gs-models", "gs-models --json", "gs-models --models-dir ~/my-models"))
@models_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@version_option
@one_line_errors
def models_main(models_dir, as_json):
    """List installed models with their cuts and latent shapes (* marks the recommended cut), and the denoisers of
    the plug-and-play methods."""
    from ..generator.denoiser import available_denoisers, load_denoiser

    if models_dir is not None and not registry.Path(models_dir).is_dir():
        raise GSError(f"--models-dir {models_dir} is not a folder")
    rows = []
    for name, path in registry.available(models_dir).items():
        try:
            man = registry.load(str(path), verify=False)
        except GSError as e:
            rows.append({"name": name, "path": str(path), "error": str(e)})
            continue
        rows.append({"name": name, "kind": "generator", "path": str(path), "architecture": man.architecture,
                     "image": list(man.image_shape), "untrained": man.untrained,
                     "recommended_cut": man.recommended_cut,
                     "cuts": [{"cut": c.cut, "inputs": {n: list(man.tensors[n]) for n in c.inputs},
                               "size": c.size(man.tensors)} for c in man.cuts]})
    dens = []
    for name, path in available_denoisers(models_dir).items():
        try:
            d = load_denoiser(path, verify=False)
        except GSError as e:
            dens.append({"name": name, "kind": "denoiser", "path": str(path), "error": str(e)})
            continue
        dens.append({"name": name, "kind": "denoiser", "path": str(path), "architecture": d.architecture,
                     "sigma_max": d.sigma_max, "parameters": d.raw["architecture"].get("parameters")})
    if not rows:
        where = ", ".join(str(p) for p in registry.search_path(models_dir))
        raise GSError(f"no models found (looked in {where}): add a model folder to one of them, set "
                      "$GS_ONNX_MODELS, or pass --models-dir")
    if as_json:
        click.echo(json.dumps(rows + dens, indent=1))
        return
    for r in rows:
        if "error" in r:
            click.echo(f"{r['name']}: {r['error']}")
            continue
        tag = " (untrained)" if r["untrained"] else ""
        click.echo(f"{r['name']}: {r['architecture']}{tag}, image {'x'.join(map(str, r['image']))}, "
                   f"recommended cut {r['recommended_cut']}  [{r['path']}]")
        for c in r["cuts"]:
            ins = " + ".join(f"{n} {'x'.join(map(str, s))}" for n, s in c["inputs"].items())
            mark = " *" if c["cut"] == r["recommended_cut"] else ""
            click.echo(f"  cut {c['cut']}: {ins} ({c['size']} values){mark}")
    for d in dens:
        if "error" in d:
            click.echo(f"{d['name']} (denoiser): {d['error']}")
            continue
        click.echo(f"{d['name']}: denoiser {d['architecture']}, {d['parameters']} parameters, noise levels up to "
                   f"{d['sigma_max']:g} (--method pnp, gs-pnp)  [{d['path']}]")
