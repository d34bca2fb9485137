"""TF SavedModel export of the two ported networks, and its reload (``bcc export``).

The SavedModel's ``serve`` function takes float32 NCHW input, the torch module's layout
(batch and, for the single-image classifier, height and width dynamic), transposes it to
NHWC for the Keras port inside the graph, and returns the tensor the torch module's forward
returns: N x 4 logits (patch classifier) or N x 2 x 2 log-probabilities (single image).
"""

from pathlib import Path

import numpy as np

from ...core import formats
from .keras_models import build_keras_model, keras

ENDPOINT = "serve"


def _input_channels(torch_model, network):
    if network == "patch":
        return int(torch_model.features.conv0.in_channels)
    return int(torch_model.column.first_conv.in_channels)


def export_saved_model(torch_model, network, directory):
    """Write the SavedModel of ``torch_model`` into ``directory`` (replaced as a whole, only
    once complete); returns the directory as a Path."""
    import tensorflow as tf

    model = build_keras_model(torch_model, network)
    spec = tf.TensorSpec([None, _input_channels(torch_model, network), None, None],
                         tf.float32, name="input")

    def serve(x):
        return model(tf.transpose(x, [0, 2, 3, 1]), training=False)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(ENDPOINT, serve, input_signature=[spec])
    with formats.staged_output_dir(directory, overwrite=True) as stage:
        archive.write_out(str(stage), verbose=False)
    return Path(directory)


def load_saved_model(directory):
    """A callable: float32 NCHW numpy array → numpy array (the ``serve`` function)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(directory))  # kept alive: it owns the variables

    def run(x):
        return getattr(loaded, ENDPOINT)(tf.constant(np.asarray(x, dtype=np.float32))).numpy()
    return run
