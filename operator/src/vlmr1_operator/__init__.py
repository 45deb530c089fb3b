"""vlmr1 operator: the GRPOJob and VLMService controllers (kopf), their builders and planners."""
