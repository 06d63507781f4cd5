"""Image priors for generative-prior inversion: generators ``z (, y) -> image`` from public data.

* :func:`load_public_face_prior`: the pretrained public face DCGAN (``gan-face-generate``).
* :func:`train_prior`: a DCGAN that InvGuard trains on the attacker's public images (GMI, KED-MI).
* :func:`train_conditional_prior`: PLG-MI's conditional GAN with the target's pseudo-labels.
* :func:`adapt_prior`: a pretrained prior fine-tuned to the attacker's public images (few-shot GAN
  adaptation: pretrained generator, new discriminator, DiffAugment).
* :func:`load_generator_file`: the user's own generator (state dict or ``torch.export`` program).
"""

from invguard.priors.base import ImagePrior, OutputMap
from invguard.priors.dcgan import DCGANDiscriminator, DCGANGenerator
from invguard.priors.finetune import AdaptConfig, adapt_prior
from invguard.priors.pretrained import (
    PUBLIC_FACE_INSTALL,
    PUBLIC_FACE_LICENCE,
    face_output_map,
    load_generator_file,
    load_public_face_prior,
    public_face_weights_path,
)

__all__ = [
    "PUBLIC_FACE_INSTALL",
    "PUBLIC_FACE_LICENCE",
    "AdaptConfig",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "ImagePrior",
    "OutputMap",
    "adapt_prior",
    "face_output_map",
    "load_generator_file",
    "load_public_face_prior",
    "public_face_weights_path",
]
