"""The small shapes-world CLIP: its model, training data, training loop and evaluation."""
