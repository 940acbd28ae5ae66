"""Local stand-ins for the Hugging Face Hub, RunPod, Verda and their instances (tests and --rehearse)."""
