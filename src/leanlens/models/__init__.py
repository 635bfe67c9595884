"""What a model is: the `Model` protocols, their adapters and `wrap()`."""

from leanlens.models.base import (
           BLACK_BOX,
           GRADIENTS,
           LAYERS,
           DifferentiableModel,
           Model,
)
from leanlens.models.callable_model import CallableModel
from leanlens.models.keras_model import KerasModel
from leanlens.models.onnx_model import OnnxModel
from leanlens.models.sklearn_model import SklearnModel
from leanlens.models.torch_model import TorchModel
from leanlens.models.wrap import wrap
from leanlens.models.zoo import SmallResNet

__all__ = ["BLACK_BOX", "GRADIENTS", "LAYERS", "CallableModel", "DifferentiableModel", "KerasModel", "Model",
           "OnnxModel", "SklearnModel", "SmallResNet", "TorchModel", "wrap"]
