"""Training: one loop for every adversarial or supervised model, the WGAN-GP pieces, the
denoisers' training methods, the model cache and the denoisers' evaluation."""
