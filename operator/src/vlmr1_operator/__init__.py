"""vlmr1 operator: GRPOJob and VLMService controllers, CRD generation and the vlmr1 CLI."""
