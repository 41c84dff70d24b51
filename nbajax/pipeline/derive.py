"""Config derivation: the configs and specs the jobs build from a config.

One owner for each derived value, imported by the jobs, the grid and the
config checks alike (none of them imports another job for it):

* `attack_params`: the attack's parameters (`params` + `params_json`);
* `cell_config`: the config of one grid cell (attack, seed, overrides);
* `defense_seed_config`: a cell's config for one defense seed;
* `backdoor_config`, `backdoor_attack_fields`: what the backdoored model
  trains with (`attack.epochs`), and the attack fields its fingerprint
  hashes;
* `attack_from_spec`: the prepared attack a finished attack run recorded.
"""

import json
import os
from typing import Any

import ml_collections

from nbajax import attacks
from nbajax.atomic import json_default
from nbajax.errors import UserError

# Attacks whose trigger is made from (or whose poison needs) a clean model.
NEEDS_CLEAN_MODEL = ('trojan', 'cl')


def to_dict(config: Any) -> dict[str, Any]:
  """A ConfigDict (or dict) as plain JSON-able Python."""
  if isinstance(config, ml_collections.ConfigDict):
    config = config.to_dict()
  return json.loads(json.dumps(config, default=json_default))


def attack_params(attack_cfg: ml_collections.ConfigDict) -> dict[str, Any]:
  """`attack.params` merged with the JSON object of `attack.params_json`.

  Raises:
    UserError: `params_json` is not JSON, or not a JSON object.
  """
  params = to_dict(attack_cfg.params) or {}
  extra = attack_cfg.params_json
  if extra:
    try:
      parsed = json.loads(extra)
    except json.JSONDecodeError as e:
      raise UserError(f'attack.params_json is not valid JSON: {e}') from e
    if not isinstance(parsed, dict):
      raise UserError(
          'attack.params_json must be a JSON object of attack parameters, '
          f'e.g. \'{{"alpha": 0.1}}\', got a JSON {type(parsed).__name__}: '
          f'{extra}')
    params.update(parsed)
  return params


def cell_config(config: ml_collections.ConfigDict, *, attack: str,
                seed: int, workdir: str) -> ml_collections.ConfigDict:
  """The config of one grid cell (attack, seed): grid overrides applied.

  Args:
    config: a grid config.
    attack: the cell's attack name.
    seed: the cell's seed (model, poison, clean subset).
    workdir: the grid directory (the clean model lives in `seed<s>/clean`).

  Raises:
    UserError: an override names a field the attack section lacks.
  """
  c = config.copy_and_resolve_references()
  c.seed = seed
  c.attack.name = attack
  c.attack.seed = seed
  c.defense.clean_seed = seed
  c.attack.clean_model_dir = os.path.join(workdir, f'seed{seed}', 'clean')
  override = config.grid.attack_overrides.get(attack)
  if override:
    over = to_dict(override)
    c.attack.params = ml_collections.ConfigDict(over.pop('params', {}))
    for key, value in over.items():
      if key not in c.attack:
        raise UserError(f'grid.attack_overrides.{attack}.{key} is not an '
                        f'attack field; fields: {sorted(c.attack.keys())}')
      c.attack[key] = value
  return c


def defense_seed_config(cell: ml_collections.ConfigDict, defense_seed: int
                        ) -> ml_collections.ConfigDict:
  """A cell's config for one defense seed: the defense's randomness
  (`seed`) and its clean subset (`defense.clean_seed`) from `defense_seed`;
  the backdoored model stays the cell's. With the cell's own seed it is the
  cell's config unchanged."""
  c = cell.copy_and_resolve_references()
  c.seed = defense_seed
  c.defense.clean_seed = defense_seed
  return c


def backdoor_config(config: ml_collections.ConfigDict
                    ) -> ml_collections.ConfigDict:
  """`config` as the backdoored model trains: `train.epochs` replaced by
  `attack.epochs` when that is > 0.

  Some attacks implant slowly (WaNet's paper trains far longer than the
  others); the clean model of trojan and cl keeps `train`, so one clean
  model serves every attack of a seed.
  """
  merged = config.copy_and_resolve_references()
  if config.attack.epochs:
    merged.train.epochs = int(config.attack.epochs)
  return merged


def backdoor_attack_fields(config: ml_collections.ConfigDict
                           ) -> dict[str, Any]:
  """The attack section as the backdoored model's fingerprint hashes it:
  without `epochs`, which `backdoor_config(config).train` holds already,
  and without `clean_model_dir`: where the clean model lives is not a
  setting (its own fingerprint, checked when it is used, is)."""
  fields = to_dict(config.attack)
  fields.pop('epochs', None)
  fields.pop('clean_model_dir', None)
  return fields


def attack_from_spec(spec: dict[str, Any]) -> attacks.Attack:
  """The prepared attack of a saved attack spec (`results['attack_spec']`)."""
  return attacks.attack_from_config(spec['attack'])
