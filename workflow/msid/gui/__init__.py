"""The local web GUI (``msid serve``): EI library search for people who do not use a shell."""
