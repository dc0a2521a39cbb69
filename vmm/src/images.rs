//! Guest kernels built into the ftvm binary.
