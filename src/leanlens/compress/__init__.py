"""Making models smaller: structured pruning, int8 quantization, fine-tuning."""

from leanlens.compress.criteria import CRITERIA
from leanlens.compress.finetune import finetune
from leanlens.compress.prune import prune
from leanlens.compress.quantize import SCHEMES, quantize
from leanlens.compress.replay import Replay

__all__ = ["CRITERIA", "SCHEMES", "Replay", "finetune", "prune", "quantize"]
