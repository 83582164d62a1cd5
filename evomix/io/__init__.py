"""Audio in and out: reading stems into a Session, writing files atomically, spilling finished audio to disk."""
