"""Hard-negative mining over videos.

Pure code: `fusion` (per-frame scores), `gating` (temporal multi-cue gate, zone state),
`selection` (score band / false-alarm rules, quota, de-duplication), `summary` (run report).
Stages: `stages` (the scoring actor). Ray wiring: `pipeline`. Files: `outputs`, `inputs`.
"""
