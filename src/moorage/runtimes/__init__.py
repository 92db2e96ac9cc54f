"""Runtimes run replicas; the controller is their only caller."""
