"""model layer of LLMOS."""
