"""The job skeleton and its typed record (`nbajax.pipeline.record`)."""

import json

import pytest

from nbajax.errors import UserError
from nbajax.pipeline import record

METRICS = {'acc': 0.9, 'acc_nontarget': 0.89, 'asr': 0.05, 'ra': 0.8}

# The keys results.json held before the record existed, per role: runs
# written then must read back, and runs written now must look the same.
LEGACY_KEYS = {
    'clean': {'fingerprint', 'role', 'dataset', 'model', 'test_acc',
              'epochs', 'history', 'wall_seconds', 'config'},
    'backdoored': {'fingerprint', 'role', 'attack', 'dataset', 'model',
                   *METRICS, 'poisoned', 'history', 'wall_seconds',
                   'config', 'attack_spec'},
    'teacher': {'fingerprint', 'role', *METRICS, 'history', 'wall_seconds'},
    'defended': {'fingerprint', 'role', 'defense', 'attack', 'dataset',
                 'model', 'before', 'after', *METRICS, 'der',
                 'clean_subset', 'history', 'wall_seconds', 'config'},
}

RECORDS = {
    'clean': record.RunRecord(
        role='clean', dataset='digits', model='cnn',
        metrics={'test_acc': 0.97}, epochs=2, history=[{'epoch': 1}],
        config={'seed': 0}),
    'backdoored': record.RunRecord(
        role='backdoored', attack='badnets', dataset='digits', model='cnn',
        metrics=dict(METRICS), poisoned=144, history=[], config={},
        attack_spec={'target': 0}),
    'teacher': record.RunRecord(role='teacher', metrics=dict(METRICS)),
    'defended': record.RunRecord(
        role='defended', defense='nad', attack='badnets', dataset='digits',
        model='cnn', before={'acc': 0.99, 'asr': 1.0},
        metrics=dict(METRICS), der=0.95, clean_subset={'count': 144},
        history=[], config={}),
}


@pytest.mark.parametrize('role', sorted(RECORDS))
def test_results_json_keys_are_the_legacy_ones(role):
  rec = RECORDS[role]
  rec.fingerprint, rec.wall_seconds = 'f' * 16, 1.5
  out = rec.to_json()
  assert set(out) == LEGACY_KEYS[role]
  assert record.RunRecord.from_json(json.loads(json.dumps(out))) == rec
  if role == 'defended':
    assert out['after'] == METRICS


def test_run_once_writes_then_reuses(tmp_path):
  calls = []

  def body():
    calls.append(1)
    return record.RunRecord(role='teacher', metrics=dict(METRICS))

  kw = dict(fingerprint='a' * 16, label='test', overwrite=False, body=body)
  first = record.run_once(str(tmp_path / 'w'), **kw)
  assert first['fingerprint'] == 'a' * 16 and first['wall_seconds'] >= 0
  saved = json.loads((tmp_path / 'w' / 'results.json').read_text())
  assert saved == first
  # No checkpoints were written by this body, so reuse must refuse.
  with pytest.raises(UserError, match='checkpoints are gone'):
    record.run_once(str(tmp_path / 'w'), **kw)
  assert calls == [1]
  with pytest.raises(UserError, match='other settings'):
    record.run_once(str(tmp_path / 'w'), **{**kw, 'fingerprint': 'b' * 16})
