"""The model-spec strings users type (torch-free, so every command's ``--help`` can show them), and the
named aliases of open_clip models: ``bioclip``, ``bioclip-2``."""

from __future__ import annotations

from dataclasses import dataclass

SPEC_HELP = (
    "lite, openclip:ARCH@TAG (e.g. openclip:ViT-B-32@openai), openclip:hf-hub:ID, hf:ID_OR_DIR, "
    "or bioclip / bioclip-2 (add @DIR for a local copy)"
)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class OpenClipAlias:
    """A name for an open_clip hub model, with what its card says about using it."""

    hub_id: str  # the Hugging Face repo open_clip loads as hf-hub:ID
    arch: str  # the architecture of its open_clip_config.json
    template: str  # the zero-shot text template its authors use
    image_size: int = 224
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD

    def files_help(self, alias: str) -> str:
        return (
            f"download open_clip_config.json and open_clip_pytorch_model.bin (or open_clip_model.safetensors) "
            f"from https://huggingface.co/{self.hub_id} into a directory DIR, then pass {alias}@DIR"
        )


# BioCLIP (Stevens et al. 2024) and BioCLIP 2 (Gu et al. 2025), MIT: OpenAI-CLIP-initialised ViTs trained on
# TreeOfLife with the OpenAI normalisation; their zero-shot text is "a photo of " + the (taxonomic) name.
ALIASES = {
    "bioclip": OpenClipAlias("imageomics/bioclip", "ViT-B-16", "a photo of {class}."),
    "bioclip-2": OpenClipAlias("imageomics/bioclip-2", "ViT-L-14", "a photo of {class}."),
}


def expand_alias(spec: str) -> tuple[str, OpenClipAlias | None]:
    """``bioclip`` → (``openclip:hf-hub:imageomics/bioclip``, its alias); ``bioclip@DIR`` → the local
    directory as ``openclip:local-dir:DIR``; any other spec is returned as it is."""
    name, sep, where = spec.partition("@")
    alias = ALIASES.get(name)
    if alias is None:
        return spec, None
    if sep and where:
        return f"openclip:local-dir:{where}", alias
    return f"openclip:hf-hub:{alias.hub_id}", alias
