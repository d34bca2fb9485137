"""What a run computes with, shared by ``bcc run`` and ``bcc single``. Defaults are the
drivers' (SPEC 8); ``precision`` and ``runtime`` are this project's opt-ins."""

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ComputeSettings:
    device_type: str = "gpu"
    gpu_number: int = 0
    precision: str = "fp32"
    runtime: str = "auto"
    heatmap_batch_size: int = 100
    batch_size: int = 1
    num_epochs: int = 10
    seed: int = 0
    trust_checkpoint: bool = False

    @classmethod
    def from_namespace(cls, namespace, **extra):
        """Settings from parsed command-line flags of the same names (plus ``extra``)."""
        values = {f.name: getattr(namespace, f.name) for f in fields(cls)
                  if hasattr(namespace, f.name)}
        values.update(extra)
        return cls(**values)
