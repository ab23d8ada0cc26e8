"""runtime layer of LLMOS."""
