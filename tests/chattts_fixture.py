"""Build a ChatTTS checkpoint with random weights, in the official asset layout.

``tiny`` geometry (≈3 MB, well under a second) is what the tests load through the
production entry point; ``full`` is the real geometry (≈1.2 GB, seconds to
build) for bench/chattts_batching.py. Every module is built with the library's
own classes (ChatTTS ``Embed``/``DVAE``, ``vocos``, transformers ``LlamaModel``),
so state-dict keys match whatever the installed versions expect. The
tokenizer is a small local BERT WordPiece vocabulary plus ChatTTS's 50 control
tokens in their real order. ``voicegw_geometry.json`` tells the loader the
geometry; the returned ``sha256`` map is what the integrity check must be
given (the stock map rejects these files).

Use from pytest (session scope, built in a tmp dir)::

    @pytest.fixture(scope="session")
    def tiny_ckpt(tmp_path_factory): return build_checkpoint(tmp_path_factory.mktemp("chattts"))
"""

from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tts.chattts_assets import GEOMETRY_FILE, hash_assets
from tts.chattts_voices import PRESETS, make_voice

CONTROL_TOKENS = (
    ["[Sasr]", "[Pasr]", "[Easr]", "[Stts]", "[Ptts]", "[Etts]", "[Sbreak]", "[Pbreak]", "[Ebreak]", "[uv_break]",
     "[v_break]", "[lbreak]", "[llbreak]", "[undefine]", "[laugh]", "[spk_emb]", "[empty_spk]", "[music]", "[pure]"]
    + [f"[break_{i}]" for i in range(8)] + [f"[laugh_{i}]" for i in range(3)]
    + [f"[oral_{i}]" for i in range(10)] + [f"[speed_{i}]" for i in range(10)]
)
_WORDS = ["the", "and", "you", "hello", "world", "thank", "for", "calling", "please", "hold", "one", "two", "three",
          "five", "dollars", "cents", "twenty"]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    path: Path
    sha256: dict[str, str]
    geometry: str


def _geometry(kind: str, num_text_tokens: int, seed: int) -> dict[str, Any]:
    from ChatTTS.config import config as cc

    if kind == "full":
        base = cc.Config()
        geo: dict[str, Any] = {
            "gpt": asdict(base.gpt), "embed": asdict(base.embed), "decoder": asdict(base.decoder),
            "dvae": asdict(base.dvae), "vocos": {"backbone": asdict(base.vocos.backbone.init_args),
                                                  "head": asdict(base.vocos.head.init_args)},
        }
        geo["gpt"]["num_text_tokens"] = geo["embed"]["num_text_tokens"] = num_text_tokens
        geo["spk_stat"] = base.spk_stat
        geo["dvae"]["vq"]["levels"] = list(geo["dvae"]["vq"]["levels"])
        return geo
    import pybase16384 as b14

    hidden = 64
    rng = np.random.default_rng(seed)
    std = rng.uniform(0.5, 1.5, hidden).astype(np.float16)
    mean = rng.normal(0.0, 0.3, hidden).astype(np.float16)
    small = {"idim": hidden // 2, "odim": hidden // 2, "hidden": 32, "n_layer": 1, "bn_dim": 32}
    return {
        "gpt": {**asdict(cc.GPT()), "hidden_size": hidden, "intermediate_size": 128, "num_attention_heads": 2,
                "num_hidden_layers": 2, "num_text_tokens": num_text_tokens},
        "embed": {"hidden_size": hidden, "num_audio_tokens": 626, "num_text_tokens": num_text_tokens, "num_vq": 4},
        "decoder": small,
        "dvae": {"encoder": {"idim": 32, "odim": 64, "hidden": 32, "n_layer": 1, "bn_dim": 32},
                 "decoder": {"idim": 32, "odim": 32, "hidden": 32, "n_layer": 1, "bn_dim": 32},
                 "vq": {"dim": 64, "levels": [5, 5, 5, 5], "G": 2, "R": 2}},
        "vocos": {"backbone": {"input_channels": 100, "dim": 32, "intermediate_dim": 64, "num_layers": 1},
                  "head": {"dim": 32, "n_fft": 1024, "hop_length": 256, "padding": "center"}},
        "spk_stat": b14.encode_to_string(np.concatenate([std, mean]).tobytes()),
    }


def _vocab() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    punct = list(string.punctuation) + ["，", "。", "、", "？", "！"]
    letters = list(string.ascii_lowercase)
    cjk = []
    import ChatTTS

    homophones = Path(str(ChatTTS.__file__)).parent / "res" / "homophones_map.json"
    for k, v in json.loads(homophones.read_text(encoding="utf-8")).items():
        for ch in (k, v):
            if ch not in cjk:
                cjk.append(ch)
        if len(cjk) >= 400:
            break
    cjk += [c for c in "你好世界谢谢再见请稍等" if c not in cjk]
    return specials + punct + list(string.digits) + letters + [f"##{c}" for c in letters] + _WORDS + cjk


def _write_tokenizer(target: Path) -> int:
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    vocab = _vocab()
    tok = Tokenizer(WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.add_special_tokens(CONTROL_TOKENS)
    target.mkdir(parents=True)
    tok.save(str(target / "tokenizer.json"))
    special = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
               "mask_token": "[MASK]"}
    # The classic (transformers 4.x) layout; transformers 5 reads it too.
    (target / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    (target / "tokenizer_config.json").write_text(json.dumps({
        **special, "tokenizer_class": "BertTokenizerFast", "do_lower_case": True, "tokenize_chinese_chars": True,
        "strip_accents": None, "model_max_length": 512, "clean_up_tokenization_spaces": True,
    }, indent=2))
    return int(tok.get_vocab_size(with_added_tokens=True))


def build_checkpoint(root: Path, geometry: str = "tiny", seed: int = 0) -> Checkpoint:
    """Write ``root/asset/...`` + ``root/voicegw_geometry.json`` with random weights; return path and hashes."""
    import torch
    from ChatTTS.model.dvae import DVAE
    from ChatTTS.model.embed import Embed
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaModel
    from vocos import Vocos
    from vocos.feature_extractors import MelSpectrogramFeatures
    from vocos.heads import ISTFTHead
    from vocos.models import VocosBackbone

    asset = root / "asset"
    n_text = _write_tokenizer(asset / "tokenizer")
    geo = _geometry(geometry, n_text, seed)
    torch.manual_seed(seed)

    def save(module: torch.nn.Module, name: str) -> None:
        tensors = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
        save_file(tensors, str(asset / name))

    g = geo["gpt"]
    llama = LlamaModel(LlamaConfig(
        hidden_size=g["hidden_size"], intermediate_size=g["intermediate_size"],
        num_attention_heads=g["num_attention_heads"], num_key_value_heads=g["num_attention_heads"],
        num_hidden_layers=g["num_hidden_layers"], max_position_embeddings=g["max_position_embeddings"],
        vocab_size=8 if geometry == "tiny" else 32000,
    ))
    llama.save_pretrained(str(asset / "gpt"))
    e = geo["embed"]
    save(Embed(e["hidden_size"], e["num_audio_tokens"], e["num_text_tokens"], e["num_vq"]), "Embed.safetensors")
    d = geo["dvae"]
    dvae = DVAE(decoder_config=d["decoder"], encoder_config=d["encoder"],
                vq_config={**d["vq"], "levels": tuple(d["vq"]["levels"])}, dim=d["decoder"]["idim"])
    save(dvae, "DVAE.safetensors")
    save(DVAE(decoder_config=geo["decoder"], dim=geo["decoder"]["idim"]), "Decoder.safetensors")
    v = geo["vocos"]
    vocos = Vocos(MelSpectrogramFeatures(sample_rate=24000, n_fft=1024, hop_length=256, n_mels=100,
                                         padding="center"),
                  VocosBackbone(**v["backbone"]), ISTFTHead(**v["head"]))
    save(vocos, "Vocos.safetensors")
    if geometry == "tiny":  # presets must match the hidden size: the tiny model brings its own
        geo["voices"] = {name: make_voice(geo["spk_stat"], 1000 + i) for i, name in enumerate(PRESETS)}
    (root / GEOMETRY_FILE).write_text(json.dumps(geo, indent=1, ensure_ascii=False))
    return Checkpoint(root, hash_assets(root), geometry)
