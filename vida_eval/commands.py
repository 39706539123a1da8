"""Registry of the sub-commands beyond parse/score/submit (data, models, inference, training checks).

Each module registers its own parser; heavy imports stay inside the commands.
"""

from . import compare
from .data import cli as data_cli
from .infer import cli as infer_cli
from .infer import sweep
from .models import text_warmup as tiny_textwarmup
from .models import tiny as tiny_model
from .models import warmup as tiny_warmup
from .train import preflight, workflow

REGISTER: list = [data_cli.register, tiny_model.register, tiny_warmup.register, tiny_textwarmup.register,
            infer_cli.register, sweep.register, preflight.register,
            workflow.register, compare.register]
