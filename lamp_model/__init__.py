"""LAMP: few-shot motion-pattern video generation (model package).

`LampUNet` is imported lazily: importing a light module such as `lamp_model.video`
or `lamp_model.config` (what the data stages need) must not pay for diffusers.
"""
__all__ = ["LampUNet", "LampUNetOutput"]


def __getattr__(name):
    if name in __all__:
        from . import unet

        return getattr(unet, name)
    raise AttributeError(f"module 'lamp_model' has no attribute {name!r}")
