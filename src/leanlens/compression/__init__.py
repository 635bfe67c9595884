"""Making models smaller: structured pruning to a budget, int8 quantization, fine-tuning."""

from leanlens.compression.budget import Budget
from leanlens.compression.criteria import CRITERIA
from leanlens.compression.finetune import finetune
from leanlens.compression.prune import prune
from leanlens.compression.quantize import SCHEMES, quantize
from leanlens.compression.replay import Replay
from leanlens.compression.stepwise import CompressionResult, Step, compress

__all__ = ["CRITERIA", "SCHEMES", "Budget", "CompressionResult", "Replay", "Step", "compress", "finetune", "prune",
           "quantize"]
