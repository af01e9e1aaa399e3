"""Generators: one interface (:class:`cxraug.generators.base.Generator`), one registry.

``train_generator(model, out, ...)`` (:mod:`cxraug.generators.train`) does what ``cxraug train-generator`` does.

Registry names: vae, conv-vae, dcgan, wgan-gp, vae-gan, acgan, pix2pix, stylegan2-ada, ddpm,
and the reference generators oracle, copy and noise used by tests and sanity arms.
"""

from cxraug.registry import Registry

GENERATORS: Registry = Registry("generator")

from cxraug.generators import acgan  # noqa: E402,F401  (registers "acgan")

from cxraug.generators import dcgan  # noqa: E402,F401  (registers dcgan)
from cxraug.generators import wgan_gp, vae, conv_vae, vae_gan  # noqa: E402,F401  (wgan-gp, vae, conv-vae, vae-gan)

from cxraug.generators import reference  # noqa: E402,F401  (registers oracle, copy, noise)
from cxraug.generators import pix2pix  # noqa: E402,F401  (registers "pix2pix")

from cxraug.generators import stylegan2_ada  # noqa: E402,F401  (registers "stylegan2-ada")
from cxraug.generators import ddpm  # noqa: E402,F401  (registers "ddpm")

from cxraug.generators.train import train_generator  # noqa: E402,F401  (the Python twin of train-generator)
