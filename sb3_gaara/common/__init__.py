"""Parts shared by every algorithm family of the package.

- :mod:`~sb3_gaara.common.torch_layers`: pixel encoder, decoder, bilinear comparison module;
- :mod:`~sb3_gaara.common.losses`: the representation losses as pure functions of tensors;
- :mod:`~sb3_gaara.common.crops`: center and random crops, on any device;
- :mod:`~sb3_gaara.common.buffers`: the frame-once replay buffer and its cropped samples;
- :mod:`~sb3_gaara.common.sequence_buffer`: the same store read as padded sequences (SLAC, Dreamer);
- :mod:`~sb3_gaara.common.distributions`: diagonal Gaussians' KL and log-likelihood (SLAC, Dreamer);
- :mod:`~sb3_gaara.common.training`: what every ``train()`` does around its updates (metrics, the non-finite check);
- :mod:`~sb3_gaara.common.preprocessing`: checks of observation and action spaces, naming the algorithm;
- :mod:`~sb3_gaara.common.overlap`: whether a callback may act at an agent step;
- :mod:`~sb3_gaara.common.env_steps`: environment steps (after action repeat), the papers' x-axis;
- :mod:`~sb3_gaara.common.durability`: atomic files and Ctrl-C deferral.

Nothing here imports an algorithm family; the families (:mod:`sb3_gaara.gaara`, ...) import from here.
"""
