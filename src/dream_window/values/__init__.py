"""Value types at the bottom of the import graph: what a frame is, what a generation asks for and
returns, seeds, slerp, doctor checks. Nothing here imports a module above it (config and errors
are the only project imports), so every layer may use them."""
