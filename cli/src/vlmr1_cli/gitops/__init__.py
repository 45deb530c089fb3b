"""GitOps promotion: pin a verified GRPOJob checkpoint in a VLMService manifest, as a Git commit.

A VLMService serves exactly the checkpoint its ``spec.model`` pins (uri + sha256 digest of the
checkpoint's manifest.json), so promoting a model is one reviewed change of two lines in a
repository that a GitOps tool (Argo CD, Flux) applies. ``vlmr1 promote`` makes that change:

1. choose a checkpoint (:mod:`.select`): of a GRPOJob on the cluster (its ``status.checkpoints``,
   read with the user's kubeconfig) or of a local run folder (``DIR/checkpoints/checkpoint-<step>``);
   ``best`` (the job's best by ``checkpoint.bestMetric``), ``latest`` or ``step=N``;
2. verify it: every file against its manifest, and for a cluster job the manifest's digest against
   the digest in the job's status (the status and the files must agree);
3. gate it: ``--require 'rec_acc>=0.85'`` is checked against the metrics of the verified manifest
   (pinned by the digest), never against possibly stale status; a short name matches the unique
   metric ending in ``/<name>`` (``eval/refcoco-val/rec_acc``);
4. edit the manifest (:mod:`.edit`): only the uri and digest values of ``spec.model`` change (a
   ``fromJob`` entry is replaced by uri and digest); comments, key order, quoting and line endings
   stay byte-identical, and the result is re-parsed and validated before an atomic write;
5. commit (:mod:`.git`): on a new branch ``promote/<service>/<job>-step-<N>`` from the current HEAD,
   with a message recording job, step, uri, digest, gates and metrics; ``--push`` pushes it.

Refusals (exit 2, nothing changed): tracked changes in the work tree, a checkpoint that does not
verify, a gate miss (with the measured value), a file that holds no VLMService, an unknown or
ambiguous metric, a job without checkpoints, a target branch that already holds something else.
Any failure after the branch was created restores the file, switches back and deletes the branch.
Promoting a checkpoint that is already pinned (in the work tree, or on the target branch) is a
no-op that exits 0.

Example::

    vlmr1 promote --job rec-qwen25vl-3b -n ml --service deploy/vlmservice.yaml \\
        --select best --require 'rec_acc>=0.85' --push
    vlmr1 promote --run-dir runs/rec --uri-prefix pvc://vlmr1-checkpoints/rec/checkpoints \\
        --service examples/vlmservice-dev-cpu.yaml --select step=4 --dry-run
"""

from __future__ import annotations

from vlmr1_core.errors import UserError

__all__ = ["PromoteError"]


class PromoteError(UserError):
    """A promotion that was refused or failed; str() says what is wrong and how to fix it."""
