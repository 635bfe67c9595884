"""Making models smaller: structured pruning, int8 quantization, fine-tuning."""

from leanlens.compression.criteria import CRITERIA
from leanlens.compression.finetune import finetune
from leanlens.compression.prune import prune
from leanlens.compression.quantize import SCHEMES, quantize
from leanlens.compression.replay import Replay

__all__ = ["CRITERIA", "SCHEMES", "Replay", "finetune", "prune", "quantize"]
