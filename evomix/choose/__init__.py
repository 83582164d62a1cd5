"""Choosing alternatives from the front: listener descriptors, picks spread by the user's weights,
their exact verification."""
