"""Applications (commands), projections (read side) and the services around them."""
