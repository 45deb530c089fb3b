"""Evaluation of checkpoints with VLM-R1's metrics.

``metrics`` scores predictions (pure: REC Acc@IoU0.5, COCO AP/AP50 over a dataset, math
verified, GUI exact match); ``generate`` runs batched greedy generation; ``policy`` loads
what to evaluate (a vlmr1 checkpoint, full or LoRA, or any model uri); ``runner`` ties them
together for ``vlmr1 eval`` and for the trainer, which evaluates every saved checkpoint
when the GRPOJob has an ``evaluation`` section. Importing this package imports no torch.
"""
