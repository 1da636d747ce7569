"""Training (section 6): SGD with momentum, the x0.96-every-8-epochs schedule, auxiliary losses weighted
by 0.3, Polyak averaging, exact resume, torchrun/DDP and ensembles.

    >>> from googlenet.train import TrainConfig, fit
    >>> config = TrainConfig()                 # the paper's recipe (see config.py for each number's source)
    >>> config.data.data_path = "data/imagenette"
    >>> results = fit(config)                  # doctest: +SKIP
"""

from googlenet.train.config import TrainConfig, dump_yaml, from_dict, load_yaml, resolve, validate
from googlenet.train.engine import evaluate_checkpoint, fit
from googlenet.train.loop import NonFiniteLossError, evaluate, train_one_epoch

__all__ = [
    "NonFiniteLossError",
    "TrainConfig",
    "dump_yaml",
    "evaluate",
    "evaluate_checkpoint",
    "fit",
    "from_dict",
    "load_yaml",
    "resolve",
    "train_one_epoch",
    "validate",
]
