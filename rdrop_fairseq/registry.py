"""Register our criterion under a name fairseq may already use.

fairseq >= 0.12.3 (and the fairseq-fixed fork) ships its own
``label_smoothed_cross_entropy_with_rdrop``; its ``register_criterion`` refuses
a second registration ("Cannot register duplicate criterion"). We remove the
built-in from the criterion and dataclass registries first; hydra's
ConfigStore simply overwrites the node of the same name, so YAML written for
the built-in resolves to our config (a superset of its fields).
"""
import logging

logger = logging.getLogger(__name__)


def register_criterion_replacing(name, dataclass):
    """Like fairseq's ``register_criterion``, but replaces an existing entry of that name."""
    from fairseq.criterions import (
        CRITERION_DATACLASS_REGISTRY,
        CRITERION_REGISTRY,
        register_criterion,
    )

    def wrap(cls):
        existing = CRITERION_REGISTRY.get(name)
        if existing is not None:
            del CRITERION_REGISTRY[name]
            CRITERION_DATACLASS_REGISTRY.pop(name, None)
            if existing.__qualname__ != cls.__qualname__:
                logger.info(
                    "rdrop_fairseq: criterion '%s' now uses %s.%s (replacing %s.%s)",
                    name, cls.__module__, cls.__qualname__,
                    existing.__module__, existing.__qualname__,
                )
        return register_criterion(name, dataclass=dataclass)(cls)

    return wrap
