"""Backdoor attacks: triggers, their registry, and data-set poisoning.

    attack = get_attack('badnets')                 # NAD's default trigger
    attack = get_attack('blend', alpha=0.1, seed=3)
    x_trig = attack.apply(x)                       # float NHWC in [0, 1]
    cfg = attack.to_config()                       # JSON-able
    same = attack_from_config(json.loads(json.dumps(cfg)))

Attacks: 'badnets', 'trojan', 'blend' (dirty-label), 'sig', 'cl', 'refool'
(clean-label), 'wanet' (dirty-label with label-keeping cross samples).
Poisoning: `nbajax.attacks.poison`. Imports jax and numpy only.
"""

import dataclasses
import typing
from typing import Any, Mapping

import numpy as np

from nbajax.attacks.badnets import BadNets
from nbajax.attacks.base import Attack
from nbajax.attacks.base import CleanFn
from nbajax.attacks.blend import Blend
from nbajax.attacks.cl import LabelConsistent
from nbajax.attacks.refool import Refool
from nbajax.attacks.sig import Sig
from nbajax.attacks.trojan import make_trojan_trigger
from nbajax.attacks.trojan import Trojan
from nbajax.attacks.wanet import WaNet

_REGISTRY: dict[str, type[Attack]] = {
    cls.name: cls
    for cls in (BadNets, Trojan, Blend, Sig, LabelConsistent, Refool, WaNet)
}
ATTACK_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def attack_class(name: str) -> type[Attack]:
  """The class registered under `name`; ValueError lists the names."""
  if name not in _REGISTRY:
    raise ValueError(f'unknown attack {name!r}; allowed: {list(ATTACK_NAMES)}')
  return _REGISTRY[name]


def get_attack(name: str, **params: Any) -> Attack:
  """Builds an attack by name.

  Args:
    name: one of `ATTACK_NAMES`.
    **params: the attack's fields (see each class); arrays may be lists.

  Returns:
    The attack.

  Raises:
    ValueError: unknown name or parameter (the message lists the allowed
      ones), or an invalid value.
  """
  cls = attack_class(name)
  allowed = [f.name for f in dataclasses.fields(cls)]
  unknown = sorted(set(params) - set(allowed))
  if unknown:
    raise ValueError(f'unknown parameter(s) {unknown} for attack {name!r}; '
                     f'allowed: {allowed}')
  for field in dataclasses.fields(cls):
    if field.name in params:
      _check_type(name, field.name, field.type, params[field.name])
  return cls(**params)


_KINDS = {int: 'an int', float: 'a number', str: 'a string', bool: 'a bool'}


def _check_type(attack: str, field: str, annotation: Any, value: Any) -> None:
  """Refuses a value of the wrong type for an int/float/str/bool field.

  Without this a size of True or 2.7 would be truncated to 1 or 2 by the
  `int()` inside the attack, silently making another trigger.
  """
  kinds = typing.get_args(annotation) or (annotation,)
  if value is None and type(None) in kinds:
    return
  kind = next((k for k in kinds if k in _KINDS), None)
  if kind is None:
    return  # Any, arrays, positions: the attack checks those itself.
  number = isinstance(value, (int, float, np.integer, np.floating))
  ok = {int: isinstance(value, (int, np.integer)),
        float: number and bool(np.isfinite(value)),
        str: isinstance(value, str),
        bool: isinstance(value, (bool, np.bool_))}[kind]
  if kind is not bool and isinstance(value, (bool, np.bool_)):
    ok = False
  if not ok:
    optional = ' or null' if type(None) in kinds else ''
    raise ValueError(f'attack {attack!r}: {field} must be {_KINDS[kind]}'
                     f'{optional}, got {value!r} ({type(value).__name__})')


def attack_from_config(cfg: Mapping[str, Any]) -> Attack:
  """Inverse of `Attack.to_config` (also after a JSON round trip).

  Args:
    cfg: {'name': ..., **params}, arrays as nested lists or arrays.

  Returns:
    An attack whose `apply` equals the original's.

  Raises:
    ValueError: missing or unknown name or parameters.
  """
  params = dict(cfg)
  if 'name' not in params:
    raise ValueError(f'attack config needs a "name"; got keys {sorted(cfg)}')
  return get_attack(params.pop('name'), **params)


__all__ = [
    'ATTACK_NAMES', 'Attack', 'BadNets', 'Blend', 'CleanFn', 'LabelConsistent',
    'Refool', 'Sig', 'Trojan', 'WaNet', 'attack_class', 'attack_from_config',
    'get_attack', 'make_trojan_trigger'
]
