"""Model families. A builder is ``build(cfg: ModelConfig, input_shape, num_classes) -> nn.Module``.

Every model takes float images in [0, 1] shaped (N, C, H, W) and standardises them
itself (``Standardize``), so a checkpoint is usable without knowing the dataset's
statistics. Register a new family with one import line below.
"""

from prunelab.models import cnn as _cnn  # noqa: F401  (registers mnist_cnn, cifar_cnn)
from prunelab.models import mlp as _mlp  # noqa: F401  (registers mlp)
from prunelab.models import torchvision_models as _tv  # noqa: F401  (registers vgg16, vgg16_bn, resnet101)
from prunelab.models.catalog import MODELS, build_for, check_input_size, model_config

__all__ = ["MODELS", "build_for", "check_input_size", "model_config"]
