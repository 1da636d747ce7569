"""`googlenet benchmark`: measured paths (`paths`) and the command that runs and compares them."""
