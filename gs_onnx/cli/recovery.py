"""``gs-export recovery`` (also ``python -m gs_onnx recovery``): the whole recovery of one measured image as one
ONNX graph plus its inputs as plain ``.npy`` files, for any ONNX Runtime in any language (docs/recovery-graph.md).
Torch-free: it runs on an install without the export extra."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..errors import GSError
from ..solve.methods.gs_graph import GRAPH_METHODS
from .common import OneLineCommand, examples, models_dir_option, one_line_errors, output_option, version_option


@click.command(cls=OneLineCommand, epilog=examples(
    "gs-export recovery --measurements meas.npy -o meas-graph/",
    "gs-export recovery --measurements meas.npy --model began --cut 2 --budget paper -o graph/",
    "gs-export recovery --measurements meas.npy --reference face.jpg -o meas-graph/   # + reference.npy (PSNR)",
    "gs-recover meas-graph/                        # runs the folder: the same image, no host loop"))
@click.option("--measurements", required=True, type=click.Path(dir_okay=False),
              help="A gs-measure .npy with its sidecar.")
@click.option("--index", type=int, default=None,
              help="Which image of the file (0-based); required when the file holds more than one  [default: 0 for a "
                   "file of one image]")
@click.option("--method", type=click.Choice(["auto", *GRAPH_METHODS]), default="auto",
              help="gs: Generator Surgery; gs-pnp: GS, then the plug-and-play candidates and the held-out choice, "
                   "the ONNX denoiser inside the graph; gs-tv: GS, then TV anchored to its image; auto: the model's recommended method for the measurements' "
                   "operator (what gs-recover runs by default)  [default: auto]")
@click.option("--denoiser", default=None, metavar="NAME_OR_FOLDER",
              help="gs-pnp: the ONNX denoiser  [default: unet-celeba]")
@click.option("--model", default=None, help="Model name or folder  [default: the one the sidecar names]")
@click.option("--cut", type=int, default=None, help="Blocks to cut  [default: the model's recommended cut]")
@click.option("--budget", type=click.Choice(["auto", "paper"]), default=None,
              help="auto = the model's stopping plan for this operator; paper = 3 restarts x 500 iterations  "
                   "[default: auto]")
@click.option("--restarts", type=int, default=None, help="Restarts (rows of z0)  [default: the budget's]")
@click.option("--max-iter", type=int, default=None, help="Iterations per restart at most  [default: the budget's]")
@click.option("--stop", type=click.Choice(["fixed", "holdout"]), default=None, help="Stopping rule  [default: the plan's]")
@click.option("--holdout", type=float, default=None, help="Held-out fraction of the measurements.")
@click.option("--patience", type=int, default=None, help="Held-out rule: iterations without a better iterate.")
@click.option("--optimizer", type=click.Choice(["lbfgs", "adam"]), default="lbfgs", show_default=True,
              help="The optimiser inside the graph: the paper's L-BFGS, or torch's Adam.")
@click.option("--lr", type=float, default=None,
              help="Learning rate  [default: L-BFGS: the paper's for the model; Adam: 0.1]")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the start latents (image i: seed + i).")
@click.option("--init", default=None, help="Start latents: cn01 | zero | normal | normal5 | normal10  [default: cn01]")
@click.option("--skip-prior", type=float, default=None, metavar="W",
              help="Weight of the skip-source prior  [default: the model's recommended weight]")
@click.option("--reference", type=click.Path(dir_okay=False), default=None,
              help="The measured image itself: stored as reference.npy (preprocessed as measured) so that every "
                   "client of the folder can show the truth and a PSNR. Never fed to the graph.")
@output_option("Folder to write (recovery.onnx, inputs/, recovery.json)", file_okay=False)
@click.option("--overwrite", is_flag=True, help="Replace an existing, non-empty output folder (whole).")
@click.option("--trust-sidecar", "trust_sidecar", is_flag=True,
              help="Accept a sidecar without the checksums that vouch for it (format 1).")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Load the written graph in ONNX Runtime once (catches a graph this runtime cannot run).")
@models_dir_option
@version_option
@one_line_errors
def main(measurements, index, method, denoiser, model, cut, budget, restarts, max_iter, stop, holdout, patience, optimizer, lr, seed, init,
         skip_prior, reference, output, overwrite, trust_sidecar, check, models_dir):
    """Write the whole recovery of one image of MEASUREMENTS as one ONNX graph: recovery.onnx (an ONNX Loop
    running the paper's L-BFGS on the cut generator, the operator's ONNX form, held-out stopping and the winner
    among restarts), inputs/NAME.npy for every graph input (the operator as data, the start latents, the
    held-out rows) and recovery.json (the interface and the sha256 of every file). Feed every inputs/NAME.npy to
    the input NAME and read the output 'image'."""
    from ..generator.manifest import model_digest
    from ..io.measurement import read_measurements
    from ..io.recovery_folder import write_folder
    from ..physics import operator_for
    from ..solve.methods.gs_graph import plan_inputs
    from ..solve.registry import method as method_named
    from ..solve.registry import resolve_method
    from ..solve.settings import Settings, check_settings, cut_for, model_for, restart_budget
    from ..solve.recovery_graph import MEANING, GraphRecovery, interface_outputs, recovery_model, resume_spec
    from .recover import load_ref

    if output is None:
        raise GSError("give the folder to write with -o")
    y, sidecar = read_measurements(measurements, trust_sidecar=trust_sidecar)
    if index is None:
        if y.shape[0] > 1:
            raise GSError(f"{measurements} holds {y.shape[0]} images and a recovery folder holds one: give --index "
                          f"(0..{y.shape[0] - 1})")
        index = 0
    if not 0 <= index < y.shape[0]:
        raise GSError(f"--index {index} is outside the file's {y.shape[0]} image(s)")
    s = Settings(model=model, cut=cut, budget=budget, restarts=restarts, max_iter=max_iter, stop=stop,
                 holdout=holdout, patience=patience, lr=lr, seed=seed, init=init, skip_prior=skip_prior,
                 models_dir=models_dir, optimizer=optimizer, device="cpu")
    method, why = resolve_method(method, sidecar, s)
    if method not in GRAPH_METHODS:
        raise GSError(f"the recovery graph runs {' or '.join(GRAPH_METHODS)}, not {method} (the model's recommended "
                      "method for these measurements): give --method")
    check_settings("gs", s, method_named("gs").settings)
    if method == "gs-pnp":
        from ..solve.methods.gs_pnp import gs_settings

        s = gs_settings(sidecar, s)
    if denoiser is not None and method != "gs-pnp":
        raise GSError("--denoiser applies to --method gs-pnp")
    man = model_for(sidecar, s)
    c = cut_for(man, s)
    op = operator_for(sidecar)
    history = restart_budget(man).history
    model_proto, values = recovery_model(man, c, op, history=history, optimizer=optimizer)
    inputs, plan = plan_inputs(man, c, op, y[index], s, index, holdout_rows=method == "gs-pnp")
    meaning, outputs = dict(MEANING), interface_outputs(optimizer, int(inputs["z0"].shape[1]), history)
    if method in ("gs-pnp", "gs-tv"):
        if method == "gs-pnp":
            from ..solve.pnp_graph import graph_stage

            from ..solve.pnp import noise_level, wants_noise

            noise = noise_level(sidecar, y[index], op) if wants_noise(op.describe().get("type")) else None
            model_proto, stage_inputs, stage_plan, stage_meaning, stage_outputs = graph_stage(
                model_proto, man, op, denoiser, models_dir, noise)
        else:
            from ..solve.tv_graph import graph_stage as tv_stage

            model_proto, stage_inputs, stage_plan, stage_meaning, stage_outputs = tv_stage(model_proto, man, op)
        inputs.update(stage_inputs)
        plan["pnp" if method == "gs-pnp" else "tv"] = stage_plan
        meaning.update(stage_meaning)
        outputs.update(stage_outputs)
    ref = None if reference is None else load_ref(reference, index, sidecar, man.image_shape[1])
    if ref is not None and ref.shape != tuple(man.image_shape):
        raise GSError(f"--reference is a {ref.shape} image, model {man.name} makes {tuple(man.image_shape)}")
    inputs.update(values)
    if check:
        GraphRecovery(model_proto, "cpu")  # loads: the folder is only written if this runtime accepts the graph
    sources = sidecar.get("sources") if isinstance(sidecar.get("sources"), list) else []
    source = sources[index] if index < len(sources) and isinstance(sources[index], dict) else None
    info = {"method": method, "model": man.name, "model_sha256": model_digest(man), "cut": c, "image": index,
            "sigma": sidecar.get("sigma") if isinstance(sidecar.get("sigma"), (int, float)) else None,
            **({"source": {k: source.get(k) for k in ("path", "sha256")}} if source else {}),
            "image_shape": list(man.image_shape), "measurements": Path(measurements).name,
            "operator": sidecar.get("operator"), "m": int(op.m), "n": int(op.n), "plan": plan,
            "resume": resume_spec(optimizer, int(inputs["z0"].shape[1]), history)}
    write_folder(Path(output), model_proto, inputs, info, meaning=meaning, outputs=outputs, overwrite=overwrite,
                 sources=[measurements, Path(measurements).with_suffix(".json")] + ([reference] if reference else []),
                 reference=ref)
    size = sum(int(np.asarray(v).nbytes) for v in inputs.values())
    click.echo(f"wrote {output}/ (recovery.onnx, {len(inputs)} inputs, {size / 1e6:.1f} MB of inputs, "
               f"recovery.json): {method}, {man.name} c={c}, {optimizer}, {plan['restarts']} restart(s) x {plan['max_iter']} iterations, "
               f"{plan['stopping']['rule']} rule{', reference.npy' if ref is not None else ''}")


