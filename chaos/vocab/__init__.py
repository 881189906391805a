"""The words everything else speaks, at the bottom of the house.

Facts about Docker Hub (hub.py), registry error codes and their messages
(codes.py), endpoint kinds and how a request is classified (endpoints.py),
image references (reference.py), the names of engines, lab components and
traffic origins (names.py), units (units.py) and the typed results every
client returns (results.py). Nothing here imports any other part of chaos
except chaos.errors.
"""
