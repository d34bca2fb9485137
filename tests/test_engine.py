"""The engine's pass 2 (core.engine): why stage 4a's windows are cut on their own.

The byte-identity of the engine's outputs with run.sh's is tested end to end in
test_pipeline.py; this file pins the fact that shapes the engine's input side.
"""

import numpy as np

from breast_cancer_classifier.core.stages.augmentation import resize_window


def test_image_channel_of_a_3_channel_resize_is_not_a_1_channel_resize():
    """OpenCV's bicubic resize takes other arithmetic paths for 3 channels than for 1, so the
    image channel of stage 4b's windows may differ in the last bits from stage 4a's windows.
    The engine therefore resizes the 1-channel windows from the image alone (one read, two
    cuts), which keeps stage 4a's numbers those of run.sh."""
    rng = np.random.default_rng(0)
    joint = np.empty((2900, 2100, 3), dtype=np.float32)
    joint[..., 0] = rng.integers(0, 65536, size=joint.shape[:2])
    joint[..., 1:] = rng.random(joint.shape[:2] + (2,))
    three = resize_window(joint, "CC")[..., 0]
    one = resize_window(np.ascontiguousarray(joint[..., :1]), "CC")[..., 0]
    assert np.allclose(three, one, rtol=0, atol=0.1)  # the same interpolation...
    assert not np.array_equal(three, one)  # ...but not the same bits
