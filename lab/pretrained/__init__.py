"""The models shipped with vurn: one trained LSTM per corpus, each with a model card.

    >>> sorted(available())
    ['linux_kernel_lstm', 'war_and_peace_lstm']
    >>> model, meta = load_model("war_and_peace_lstm")
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the shipped models.

    >>> available()
    ['linux_kernel_lstm', 'war_and_peace_lstm']
    """
    return sorted(p.stem for p in HERE.glob("*.safetensors"))


def resolve(name_or_path) -> Path:
    """A shipped model's name, or a checkpoint path (a run folder means its best.safetensors).

    >>> import tempfile, pathlib, shutil
    >>> from lab.checkpoint import CheckpointError
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> _ = shutil.copy(resolve("war_and_peace_lstm"), run / "best.safetensors")
    >>> resolve("war_and_peace_lstm").name, resolve(run).name
    ('war_and_peace_lstm.safetensors', 'best.safetensors')
    >>> try: resolve("no_such_model")
    ... except CheckpointError as e: print(e)
    no checkpoint 'no_such_model': give a path ... or one of the shipped models: linux_kernel_lstm, war_and_peace_lstm
    """
    from lab.checkpoint import CheckpointError
    if (not isinstance(name_or_path, (str, Path)) and not hasattr(name_or_path, "__fspath__")) or name_or_path == "":
        raise CheckpointError(f"no checkpoint {name_or_path!r}: give a shipped model's name "
                              f"({', '.join(available())}), a .safetensors file or a run folder")
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / "best.safetensors").is_file():
            last = path / "last.safetensors"
            if last.is_file():
                raise CheckpointError(f"run folder {path} has no best.safetensors (a run writes it when its first "
                                      f"epoch ends): to use the run's latest weights, name {last}")
            raise CheckpointError(f"{path} holds no checkpoint (neither best.safetensors nor last.safetensors): "
                                  "name a run folder, a .safetensors file or a shipped model")
        path = path / "best.safetensors"
    if path.exists() or path.suffix == ".safetensors":
        return path
    shipped = HERE / f"{name_or_path}.safetensors"
    if shipped.exists():
        return shipped
    raise CheckpointError(f"no checkpoint {name_or_path!r}: give a path to a .safetensors file or run "
                          f"folder, or one of the shipped models: {', '.join(available()) or 'none'}")


def load_model(name_or_path, device="cpu"):
    """Load a shipped model or any checkpoint: returns ``(CharRNN in eval mode, metadata)``.

    >>> model, meta = load_model("war_and_peace_lstm")
    >>> model.cfg, meta["corpus"], len(meta["vocab"])
    (ModelConfig(kind='lstm', layers=2, width=307, vocab_size=82, dropout=0.25), 'war_and_peace', 82)
    """
    from lab.checkpoint import CheckpointError, load_checkpoint
    from lab.models import CharRNN, ModelConfig

    path = resolve(name_or_path)
    tensors, meta = load_checkpoint(path)
    if "model_config" not in meta:
        raise CheckpointError(f"{path} is a vurn checkpoint without a model_config (not a model: "
                              f"its metadata holds {', '.join(sorted(meta)) or 'nothing'})")
    model = CharRNN(ModelConfig.from_dict(meta["model_config"]))
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")} or tensors
    try:
        model.load_state_dict({k: v.float() for k, v in weights.items()})
    except RuntimeError as e:
        first = str(e).strip().splitlines()[1:2] or [str(e)]
        raise CheckpointError(f"{path}: its weights do not fit the model its model_config describes "
                              f"({first[0].strip()}): the checkpoint is damaged or was written by other code") from None
    return model.to(device).eval(), meta
