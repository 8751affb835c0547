"""Line and order events, and the key expiry checks."""
