"""A GAN for calorimeter showers, trained by mpilearn through its own train_step.

    mpilearn train --model examples/calo_gan.py:build --train data/train.txt --val data/val.txt -n 3

The model carries two networks and two optimizers, as mpi_learn's 3D
calorimeter GAN did; mpilearn's workers run this train_step and send the
change of their weights (Downpour or EASGD), so nothing about the GAN has to
fit a single loss and optimizer.
"""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="mpilearn_examples")
class CaloGAN(keras.Model):
    def __init__(self, shape: tuple[int, ...], latent: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.shape_ = tuple(shape)
        self.latent = latent
        voxels = 1
        for size in shape:
            voxels *= size
        self.generator = keras.Sequential(
            [
                keras.Input((latent,)),
                layers.Dense(64, activation="relu"),
                layers.Dense(voxels, activation="softplus"),
                layers.Reshape(self.shape_),
            ],
            name="generator",
        )
        self.discriminator = keras.Sequential(
            [keras.Input(self.shape_), layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dense(1)],
            name="discriminator",
        )
        self.seed_generator = keras.random.SeedGenerator(1337)
        self.bce = keras.losses.BinaryCrossentropy(from_logits=True)

    def get_config(self):
        return {**super().get_config(), "shape": list(self.shape_), "latent": self.latent}

    def compile(self, d_optimizer=None, g_optimizer=None, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer or keras.optimizers.Adam(1e-3)
        self.g_optimizer = g_optimizer or keras.optimizers.Adam(1e-3)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    def call(self, x, training=False):
        return self.discriminator(x, training=training)

    def _gan_losses(self, real, training):
        batch = ops.shape(real)[0]
        noise = keras.random.normal((batch, self.latent), seed=self.seed_generator)
        fake = self.generator(noise, training=training)
        real_logits = self.discriminator(real, training=training)
        fake_logits = self.discriminator(fake, training=training)
        d_loss = self.bce(ops.ones_like(real_logits), real_logits) + self.bce(ops.zeros_like(fake_logits), fake_logits)
        g_loss = self.bce(ops.ones_like(fake_logits), fake_logits)
        return d_loss, g_loss

    def train_step(self, data):
        real = data[0] if isinstance(data, tuple) else data
        for optimizer, network, pick in (
            (self.d_optimizer, self.discriminator, 0),
            (self.g_optimizer, self.generator, 1),
        ):
            grads = _gradients(lambda: self._gan_losses(real, True)[pick], network.trainable_variables)
            optimizer.apply(grads, network.trainable_variables)
        d_loss, g_loss = self._gan_losses(real, False)
        return {"loss": d_loss + g_loss, "d_loss": d_loss, "g_loss": g_loss}

    def test_step(self, data):
        real = data[0] if isinstance(data, tuple) else data
        d_loss, g_loss = self._gan_losses(real, False)
        return {"loss": d_loss + g_loss, "d_loss": d_loss, "g_loss": g_loss}


def _gradients(loss_fn, variables):
    """Gradients with the active backend's autodiff (this example runs on torch)."""
    for variable in variables:
        variable.value.grad = None
    loss = loss_fn()
    loss.backward()
    return [v.value.grad for v in variables]


def build(input_shape, num_classes=None, latent: int = 16):
    model = CaloGAN(tuple(input_shape), latent)
    model.compile()
    return model
