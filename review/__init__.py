"""Human review: answers the checks could not settle, and answers users flagged, decided by people.

- ``review.store``: the queue, leases, decisions, edits and audit trail (SQL tables in ``attest.sqlite``;
  the one module that touches them).
- ``review.export``: decisions as golden cases (``attest eval golden``) and labelled claim/evidence pairs
  (the verifier's training format).

The HTTP API (``/v1/review/...``) and the policy around the store (who may review which tenant, re-verifying
a reviewer's edit, the semantic cache, metrics) live in ``api/review.py`` and ``api/routes/review.py``.
"""
