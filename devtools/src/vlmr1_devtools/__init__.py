"""vlmr1 dev tools: a local control plane (`vlmr1 dev cluster`), outside the shipped packages."""
