"""dsa-bench: benchmarking and cost analysis of DeepSeek Sparse Attention vs dense MLA."""
__version__ = "0.1.0"
