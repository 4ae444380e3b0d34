"""What the host plugins (Nuke, Blender) share: their settings and the `mattebox` client command run
in a subprocess. Standard library only, Python 3.9 syntax: it runs inside Nuke 14+ and Blender, which
must never import grpc, protobuf, numpy or torch (see DESIGN.md, process boundaries).

The Blender extension zip carries a copy of this package; Nuke imports it from the checkout.
"""
