"""What a model is: the `Model` protocol, its adapters and `wrap()`."""

from leanlens.models.base import BLACK_BOX, GRADIENTS, LAYERS, Model
from leanlens.models.onnx_model import OnnxModel
from leanlens.models.torch_model import TorchModel
from leanlens.models.wrap import wrap
from leanlens.models.zoo import SmallResNet

__all__ = ["BLACK_BOX", "GRADIENTS", "LAYERS", "Model", "OnnxModel", "SmallResNet", "TorchModel", "wrap"]
