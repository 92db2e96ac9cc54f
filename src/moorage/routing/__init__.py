"""The routing contract between the control plane and the gateway.

``table`` holds the frozen route table and how it is built from endpoints and
replicas, ``holder`` the swap point a process reads it from, ``codec`` its JSON
for standalone gateways and route files. ``api/``, ``controller/`` and
``gateway/`` all import it; it imports only ``models/``.
"""
