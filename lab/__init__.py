"""vurn's analysis core: corpora, models, training, checkpoints, analyses.

    >>> from lab import load_corpus, CharRNN, ModelConfig, TrainConfig, train, load_model
"""
from lab.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lab.corpus import Corpus, CorpusError, load_corpus
from lab.models import CharRNN, ModelConfig, count_parameters, width_for
from lab.pretrained import load_model
from lab.session import InterventionResult, Session
from lab.trace import Trace, compute_trace
from lab.train import TrainConfig, TrainingDiverged, evaluate, train

__all__ = [
    "CharRNN", "CheckpointError", "Corpus", "CorpusError", "ModelConfig", "TrainConfig",
    "TrainingDiverged", "Session", "Trace", "InterventionResult", "compute_trace", "count_parameters", "evaluate", "load_checkpoint", "load_corpus",
    "load_model", "save_checkpoint", "train", "width_for",
]
