"""The models shipped with vurn: one trained LSTM per corpus, each with a model card.

    >>> sorted(available())                     # doctest: +SKIP
    ['linux_kernel_lstm', 'war_and_peace_lstm']
    >>> model, meta = load_model("war_and_peace_lstm")   # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the shipped models."""
    return sorted(p.stem for p in HERE.glob("*.safetensors"))


def resolve(name_or_path) -> Path:
    """A shipped model's name, or a checkpoint path (a run folder means its best.safetensors)."""
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "best.safetensors"
    if path.exists() or path.suffix == ".safetensors":
        return path
    shipped = HERE / f"{name_or_path}.safetensors"
    if shipped.exists():
        return shipped
    from lab.checkpoint import CheckpointError
    raise CheckpointError(f"no checkpoint {name_or_path!r}: give a path to a .safetensors file or run "
                          f"folder, or one of the shipped models: {', '.join(available()) or 'none'}")


def load_model(name_or_path, device="cpu"):
    """Load a shipped model or any checkpoint: returns ``(CharRNN in eval mode, metadata)``."""
    from lab.checkpoint import load_checkpoint
    from lab.models import CharRNN, ModelConfig

    tensors, meta = load_checkpoint(resolve(name_or_path))
    model = CharRNN(ModelConfig.from_dict(meta["model_config"]))
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")} or tensors
    model.load_state_dict({k: v.float() for k, v in weights.items()})
    return model.to(device).eval(), meta
