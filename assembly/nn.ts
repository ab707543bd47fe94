// Forward pass kernels live on the nn branch.
