/* Placeholder; the kernel interface lands with the data path. */
