"""commands layer of LLMOS."""
