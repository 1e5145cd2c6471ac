"""Class descriptions (paper §2.2): prompts, LLM backends, the offline ``bank``, clean-up, description sets.

Public API::

    from fungalzsl.text import generate_descriptions, import_descriptions, describe_stats, load_description_set
    generate_descriptions("bank", ["spore", "hyphae", "mycelium"], 200, "descriptions/bank.jsonl", seed=0)
"""

from fungalzsl.text.generate import PAPER_CLASSES, GenerationReport, generate_descriptions
from fungalzsl.text.importer import import_descriptions
from fungalzsl.text.records import DescriptionSet, load_description_set
from fungalzsl.text.settings import DescribeSettings, describe_from_settings, load_describe_settings
from fungalzsl.text.stats import describe_stats

__all__ = [
    "PAPER_CLASSES",
    "DescribeSettings",
    "DescriptionSet",
    "GenerationReport",
    "describe_from_settings",
    "describe_stats",
    "generate_descriptions",
    "import_descriptions",
    "load_describe_settings",
    "load_description_set",
]
