"""Building blocks of the class-conditional StyleGAN2-ADA generator (:mod:`cxraug.generators.stylegan2_ada`).

Written from the papers (Karras et al. 2020, "Analyzing and improving the image quality of StyleGAN" and
"Training generative adversarial networks with limited data"): :mod:`.networks` (mapping, synthesis and
discriminator networks), :mod:`.ada` (the differentiable augmentation pipeline and its adaptive probability),
:mod:`.losses` (R1 and path-length regularisers, lazy-regularisation optimiser settings).
"""
