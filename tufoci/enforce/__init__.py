"""Enforcement core shared by the admission webhook and the verifying mirror: policy, verified views, decisions."""
