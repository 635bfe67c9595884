"""Making models smaller: structured pruning to a budget, unstructured sparsity, low-bit quantization,
fine-tuning."""

from leanlens.compression.budget import Budget
from leanlens.compression.criteria import CRITERIA
from leanlens.compression.finetune import finetune
from leanlens.compression.prune import prune
from leanlens.compression.quantize import SCHEMES, quantize
from leanlens.compression.replay import Replay
from leanlens.compression.sparsity import Sparsified, sparsify
from leanlens.compression.stepwise import CompressionResult, Step, compress
from leanlens.compression.twin import float_layers

__all__ = ["CRITERIA", "SCHEMES", "Budget", "CompressionResult", "Replay", "Sparsified", "Step", "compress",
           "finetune", "float_layers", "prune", "quantize", "sparsify"]
