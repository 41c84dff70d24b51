"""The NBA paper's claim, checked on result cells.

Claim (issue #4, after the NBA abstract): the method leaves a lower mean
ASR than each baseline (NAD and FT), at no more than `max_extra_acc_loss`
more accuracy loss, means taken unweighted over the attacks every compared
defense has. Only attacks whose backdoor is implanted count: an attack whose
model before defense has ASR under `min_implanted_asr` cannot tell defenses
apart (e.g. WaNet after too few epochs).
"""

from collections.abc import Iterable, Mapping, Sequence
import dataclasses
from typing import Any

from nbajax.report import cells as cells_lib


@dataclasses.dataclass(frozen=True)
class ClaimCheck:
  """Outcome of `check_claim`.

  Attributes:
    holds: True when every baseline is beaten; None when it cannot be
      checked (a defense missing on every implanted attack).
    attacks: the attacks the means are over.
    lines: one line per baseline plus a verdict line (markdown).
  """
  holds: bool | None
  attacks: tuple[str, ...]
  lines: tuple[str, ...]


def _mean(groups, attacks, defense, key) -> float | None:
  return cells_lib.mean_over_attacks(groups, attacks, defense, key,
                                     spread='std').mean


def check_claim(cells: Iterable[Mapping[str, Any]], *, method: str = 'nba',
                baselines: Sequence[str] = ('nad', 'ft'),
                max_extra_acc_loss: float = 0.01,
                min_implanted_asr: float = 0.5) -> ClaimCheck:
  """Checks "lower mean ASR than each baseline at <= 1 point extra ACC loss".

  Args:
    cells: result cells (see `nbajax.report`), with 'none' cells for the
      models before defense.
    method: the defense the claim is about.
    baselines: the defenses it must beat.
    max_extra_acc_loss: fraction of accuracy the method may lose beyond a
      baseline (0.01 = 1 point).
    min_implanted_asr: attacks whose 'none' ASR (mean over seeds) is below
      this fraction are left out.

  Returns:
    A `ClaimCheck`.

  Raises:
    ValueError: as `nbajax.report.cells.validate_cells`.
  """
  cells = cells_lib.validate_cells(cells)
  groups = cells_lib.group_cells(cells)
  defenses = (method, *baselines)
  attacks = tuple(
      a for a in cells_lib.mean_attacks(cells_lib.attack_order(cells))
      if (_mean(groups, [a], 'none', 'asr') or 0.0) >= min_implanted_asr
      and all(groups.get((a, d)) for d in defenses))
  if not attacks:
    return ClaimCheck(None, (), (
        f'Claim not checkable: no attack with ASR ≥ '
        f'{100 * min_implanted_asr:.0f} % before defense has all of '
        f'{", ".join(defenses)}.',))
  m_asr, m_acc = (_mean(groups, attacks, method, k) for k in ('asr', 'acc'))
  lines, holds = [], True
  for b in baselines:
    b_asr, b_acc = (_mean(groups, attacks, b, k) for k in ('asr', 'acc'))
    extra = b_acc - m_acc
    ok = m_asr < b_asr and extra <= max_extra_acc_loss + 1e-12
    holds = holds and ok
    lines.append(
        f'- {method} vs {b}: mean ASR {100 * m_asr:.1f} vs '
        f'{100 * b_asr:.1f} %, extra ACC loss {100 * extra:+.2f} points '
        f'(allowed {100 * max_extra_acc_loss:.2f}): '
        f'{"beaten" if ok else "not beaten"}')
  verdict = (f'**Claim {"holds" if holds else "does not hold"}** '
             f'({method} leaves a lower mean ASR than '
             f'{" and ".join(baselines)} at ≤ '
             f'{100 * max_extra_acc_loss:g} point extra ACC loss), over '
             f'{len(attacks)} implanted attacks: {", ".join(attacks)}.')
  return ClaimCheck(holds, attacks, (verdict, *lines))
