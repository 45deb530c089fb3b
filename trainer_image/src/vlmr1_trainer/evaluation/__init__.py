"""Evaluation of checkpoints with VLM-R1's metrics.

``metrics`` scores predictions (pure: REC Acc@IoU0.5 as VLM-R1's evaluation scripts read
answers, see ``rec_eval``; COCO AP/AP50 over a dataset and test_od_r1.py's single-box
accuracy; math verified; GUI exact match); ``generate`` runs batched greedy generation;
``endpoint`` generates through an OpenAI-compatible chat endpoint; ``predictions`` reads
saved predictions; ``policy`` loads what to evaluate (a vlmr1 checkpoint, full or LoRA, or any
model uri; or only its processor, for predictions made elsewhere); ``runner`` ties them
together for ``vlmr1 eval`` and for the trainer, which evaluates every saved checkpoint when
the GRPOJob has an ``evaluation`` section. Importing this package imports no torch.
"""
