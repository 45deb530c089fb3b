"""kopf handlers: parse the object, plan with pure functions, apply through k8s, write status."""
