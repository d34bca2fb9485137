"""The TensorFlow port of the image-wise path (the original's ``run_single_tf.sh``).

Keras 3 (TensorFlow backend) builds of the patch DenseNet-121 (SPEC 6.1) and the
single-image ResNet-22 (SPEC 7.1, 9), with their weights converted at load time from the
PyTorch modules that ``core.checkpoints`` loads: no weight-map files. TensorFlow is an
optional extra (``pip install .[tf]``); this package imports it only when a function that
needs it runs, and :func:`require_tensorflow` says what to install when it is missing.

- ``keras_models``: the two networks and the weight conversion;
- ``single``: stages 3 and 4 of the single-image path on TensorFlow;
- ``saved_model``: TF SavedModel export and reload (used by ``bcc export``).
"""

import importlib.util

from ...core.errors import SettingsError

INSTALL_HINT = ("TensorFlow is not installed; install the `tf` extra: "
                "pip install 'breast_cancer_classifier[tf]' (or pip install 'tensorflow-cpu>=2.16')")


def tensorflow_available():
    """Whether TensorFlow and Keras can be imported (checked without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "keras"))


def require_tensorflow():
    """Raise :class:`SettingsError` (exit status 2) naming the extra when TF is missing."""
    if not tensorflow_available():
        raise SettingsError(INSTALL_HINT)


def export_saved_model(torch_model, network, directory):
    """Convert ``torch_model`` (``network`` "patch" or "single_image") and save it as a TF
    SavedModel in ``directory``; its ``serve`` function maps float32 NCHW input to what the
    torch module's forward returns. See :mod:`.saved_model`."""
    require_tensorflow()
    from .saved_model import export_saved_model as export

    return export(torch_model, network, directory)


def load_saved_model(directory):
    """A callable: float32 NCHW numpy array → numpy output of a SavedModel written by
    :func:`export_saved_model`."""
    require_tensorflow()
    from .saved_model import load_saved_model as load

    return load(directory)
