"""The torch methods' registry entries (entry-point group ``gs_onnx.methods``, pyproject.toml): their traits, read
without importing torch; their factories in :mod:`gs_export.methods`, imported when a solver is made."""
from gs_onnx.solve.registry import Method

DEEP_DECODER = Method(
    "deep-decoder", "an untrained decoder's weights fitted by Adam (torch; sized to --model/--cut)",
    "gs_export.methods:deep_decoder", settings=frozenset({"model", "cut", "steps", "lr", "channels"}),
    extra="export", label="Deep Decoder")

IAGAN = Method(
    "iagan", "Adam on the latent, then on the latent and every generator weight (torch)",
    "gs_export.methods:iagan", settings=frozenset({"model", "steps", "lr", "finetune_steps", "finetune_lr", "init"}),
    generator=True, extra="export", label="IAGAN")
