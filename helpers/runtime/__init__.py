"""The job runtime: runs on the GPU host (pod, instance, SLURM node, CHTC slot, or here).

Stdlib only, plus huggingface_hub for `hf://` stores (imported lazily, inside the trainer's environment).
Shipped as a zip bundle built by helpers.bundle; entry point `python trainyard_runtime.pyz JOB.json`.
"""
