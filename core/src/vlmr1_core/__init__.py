"""vlmr1 core: the contracts that cross process boundaries.

The API models (GRPOJob, VLMService) and the TrainerConfig they embed, the CRDs generated
from them, the checkpoint manifest format and its verification, the uri type and the
accelerator vocabulary. The operator, the trainer and serving depend on this package and
not on each other; it imports only pydantic and PyYAML (``processors`` aside, which the
processes that load models import for the builtin tiny models' processor classes).
"""
