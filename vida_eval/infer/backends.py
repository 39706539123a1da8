"""Model backends behind one small interface.

``run(requests) -> outputs`` returns, per request and in order, ``{"text": raw
answer}`` for generation (special tokens kept, ``<|im_end|>`` kept when the
model stopped on it), ``{"probs": {" excellent": p, ...}}`` for scoring (the
next-token distribution renormalised over the five level tokens), or
``{"error": reason}`` when the request could not run (unreadable image...).

- ``vllm``: offline ``vllm.LLM``, every request of a chunk submitted at once;
- ``hf``: transformers batched ``generate`` with left padding, the reference;
- ``openai``: any OpenAI-compatible server (``vllm serve``, ``llamafactory-cli api``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from .. import prompts
from ..images import ImageError, load_image
from ..models.families import family_of_model, level_token_ids
from ..models.fingerprint import model_fingerprint
from .tasks import Request

EOS = "<|im_end|>"


def _softmax(values: list[float]) -> list[float]:
    m = max(values)
    e = [math.exp(v - m) for v in values]
    s = sum(e)
    return [x / s for x in e]


class Backend:
    name = "base"
    engines = 1  # engines that answer chunks at the same time
    # Requests about one image sent in one call share its encoding (vLLM's encoder and prefix caches): eval then
    # sends the tasks that share a pixel setting together. hf answers batch by batch and gains nothing.
    shares_images = False

    def fingerprint(self) -> str:
        raise NotImplementedError

    def settings(self) -> dict:
        """Decoding settings that change answers (part of the resume cache key)."""
        return {}

    def run(self, requests: list[Request], images: ImageStore | None = None) -> list[dict]:
        raise NotImplementedError

    def run_chunks(self, chunks: list[list[Request]]):
        """(chunk, outputs) for every chunk, as each finishes; the next chunk's images decode during each call."""
        images = ImageStore()
        try:
            for k, chunk in enumerate(chunks):
                following = chunks[k + 1] if k + 1 < len(chunks) else []
                images.want(chunk)
                images.want(following)
                outputs = self.run(chunk, images)
                images.keep_only(following)
                yield chunk, outputs
        finally:
            images.close()

    def close(self) -> None:
        pass


def _decode(path: Path):
    try:
        return load_image(path)
    except ImageError as e:
        return e


class ImageStore:
    """The decoded images of the requests in hand: each distinct file decoded once, on worker threads.

    Eight questions about a photo decoded it eight times, one after the other, while the engine waited:
    decoding is the Python side's largest cost on the real bench's sizes (up to 12 megapixels). A file is
    decoded at the first ``want`` that names it, so images wanted ahead decode while a call runs.
    """

    def __init__(self, workers: int | None = None):
        self.pool = ThreadPoolExecutor(workers or min(8, len(os.sched_getaffinity(0))))
        self.decoded: dict[Path, Future] = {}

    def want(self, requests: list[Request]) -> None:
        for r in requests:
            if r.image not in self.decoded:
                self.decoded[r.image] = self.pool.submit(_decode, r.image)

    def keep_only(self, requests: list[Request]) -> None:
        """Forget every image that none of *requests* needs."""
        needed = {r.image for r in requests}
        self.decoded = {path: f for path, f in self.decoded.items() if path in needed}

    def with_images(self, requests: list[Request]):
        """(index, request, image) of the requests whose image loads; errors for the others."""
        self.want(requests)
        ok, outputs = [], [None] * len(requests)
        for i, r in enumerate(requests):
            image = self.decoded[r.image].result()
            if isinstance(image, ImageError):
                outputs[i] = {"error": str(image)}
            else:
                ok.append((i, r, image))
        return ok, outputs

    def close(self) -> None:
        self.decoded = {}
        self.pool.shutdown(wait=True, cancel_futures=True)


def _with_images(requests: list[Request], images: ImageStore | None):
    """(index, request, image) of the requests whose image loads (each file decoded once); errors for the others."""
    if images is not None:
        return images.with_images(requests)
    own = ImageStore()
    try:
        return own.with_images(requests)
    finally:
        own.close()


class LocalModelBackend(Backend):
    """A model folder (and adapter) loaded in this process; ``chat`` renders the chat template."""

    model_path: str
    adapter: str | None
    max_new_tokens: int | None
    chat = None  # the processor (hf) or tokenizer (vllm) whose chat template builds the prompt

    @staticmethod
    def settings_of(max_new_tokens: int | None) -> dict:
        return {"max_new_tokens": max_new_tokens}

    @classmethod
    def identity(cls, model: str, adapter: str | None, max_new_tokens: int | None) -> tuple[str, dict]:
        """(fingerprint, settings) of a backend serving *model* (and *adapter*), known before it starts."""
        return model_fingerprint(model, adapter), cls.settings_of(max_new_tokens)

    def fingerprint(self) -> str:
        return model_fingerprint(self.model_path, self.adapter)

    def settings(self) -> dict:  # without the fingerprint's reads of the model folder
        return self.settings_of(self.max_new_tokens)

    def prompt(self, r: Request) -> str:
        text = self.chat.apply_chat_template(r.messages(), add_generation_prompt=True, tokenize=False)
        return text + (r.assistant_prefix or "")


# ---------------------------------------------------------------------- hf

class HFBackend(LocalModelBackend):
    """transformers ``generate`` in left-padded batches."""

    name = "hf"

    def __init__(self, model: str, adapter: str | None = None, batch_size: int = 8, device: str | None = None,
                 dtype: str = "auto", max_new_tokens: int | None = None):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.model_path, self.adapter = model, adapter
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.processor = self.chat = AutoProcessor.from_pretrained(model)
        self.processor.tokenizer.padding_side = "left"
        torch_dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
        self.model = AutoModelForImageTextToText.from_pretrained(model, dtype=torch_dtype).to(self.device).eval()
        if adapter:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, adapter).merge_and_unload().eval()
        tok = self.processor.tokenizer
        self.level_ids = level_token_ids(tok, family_of_model(model))
        self.stop_ids = {tok.convert_tokens_to_ids(EOS), tok.convert_tokens_to_ids("<|endoftext|>")}
        self.pad_id = tok.pad_token_id

    def _decode(self, ids) -> str:
        tok = self.processor.tokenizer
        out = []
        for t in ids.tolist():
            if t in self.stop_ids:
                if t == tok.convert_tokens_to_ids(EOS):
                    out.append(t)
                break
            out.append(t)
        return tok.decode(out, skip_special_tokens=False)

    def run(self, requests: list[Request], images: ImageStore | None = None) -> list[dict]:
        import torch

        ok, outputs = _with_images(requests, images)
        for start in range(0, len(ok), self.batch_size):
            batch = ok[start:start + self.batch_size]
            reqs = [r for _, r, _ in batch]
            size = reqs[0].image_size_kwargs
            kwargs = {"images_kwargs": size} if size else {}
            inputs = self.processor(text=[self.prompt(r) for r in reqs], images=[im for _, _, im in batch],
                                    padding=True, return_tensors="pt", **kwargs).to(self.device)
            with torch.no_grad():
                if reqs[0].max_new_tokens == 0:
                    # The last position only: logits for every position of a batch of 12-megapixel images
                    # (152K vocabulary) took 79 GB.
                    logits = self.model(**inputs, logits_to_keep=1).logits[:, -1, :].float()
                    for (i, _, _), row in zip(batch, logits):
                        probs = _softmax([row[t].item() for t in self.level_ids])
                        outputs[i] = {"probs": dict(zip(prompts.SCORING_LEVEL_TOKENS, probs))}
                else:
                    n = reqs[0].max_new_tokens
                    if self.max_new_tokens:
                        n = min(n, self.max_new_tokens)
                    fixed = {"min_new_tokens": n} if reqs[0].fixed_length else {}
                    gen = self.model.generate(**inputs, max_new_tokens=n, do_sample=False, pad_token_id=self.pad_id,
                                              **fixed)
                    new = gen[:, inputs["input_ids"].shape[1]:]
                    for (i, _, _), row in zip(batch, new):
                        outputs[i] = {"text": self._decode(row)}
        return outputs


# -------------------------------------------------------------------- vllm

class VLLMBackend(LocalModelBackend):
    """Offline vLLM: a chunk of requests is one ``LLM.generate`` call."""

    name = "vllm"
    shares_images = True

    def __init__(self, model: str, adapter: str | None = None, tensor_parallel_size: int = 1,
                 max_new_tokens: int | None = None, max_model_len: int | None = None,
                 gpu_memory_utilization: float = 0.9, enforce_eager: bool = False,
                 kv_cache_memory_bytes: int | None = None, max_num_seqs: int | None = None,
                 load_format: str = "auto", seed: int = 0, **engine_kwargs):
        import os

        from vllm.platforms import current_platform

        # Asking torch about CUDA here would initialise it in this process before vLLM forks its engine.
        if current_platform.is_cpu():
            # vLLM's CPU build: one process, no graph capture, an explicit KV cache size.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            enforce_eager = True
            kv_cache_memory_bytes = kv_cache_memory_bytes or (1 << 30)
        from vllm import LLM

        self.model_path, self.adapter, self.max_new_tokens = model, adapter, max_new_tokens
        kwargs = dict(model=model, tensor_parallel_size=tensor_parallel_size, seed=seed,
                      limit_mm_per_prompt={"image": 1}, logprobs_mode="processed_logprobs",
                      enforce_eager=enforce_eager, load_format=load_format, **engine_kwargs)
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        if max_num_seqs:
            kwargs["max_num_seqs"] = max_num_seqs
        if kv_cache_memory_bytes:
            kwargs["kv_cache_memory_bytes"] = kv_cache_memory_bytes
        else:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        if adapter:
            kwargs.update(enable_lora=True, max_lora_rank=_lora_rank(adapter), max_loras=1)
        self.llm = LLM(**kwargs)
        self.tokenizer = self.chat = self.llm.get_tokenizer()
        self.level_ids = level_token_ids(self.tokenizer, family_of_model(model))
        self.lora = None
        self._lora_ids: dict[str, int] = {}
        if adapter:
            self.use_adapter(adapter)
        self.warm_up()

    def use_adapter(self, adapter: str) -> None:
        """Answer with another LoRA adapter of the same base and rank from the next request on (engine started
        with one); vLLM loads each adapter once."""
        from vllm.lora.request import LoRARequest

        if self.adapter is None:
            raise ValueError("this engine was started without LoRA support")
        self.adapter = str(adapter)
        lora_id = self._lora_ids.setdefault(self.adapter, len(self._lora_ids) + 1)
        self.lora = LoRARequest(f"vida-{lora_id}", lora_id, self.adapter)

    def warm_up(self) -> None:
        """Answer one request per image-processor setting of the tasks, on a blank image.

        vLLM pays one-time costs (its multimodal warm-up, kernels built for new shapes) at the first request
        that needs them: 10.9 s for the first call of 40 perception requests on a CPU, against 0.3 s for the
        next. Paid here, they count as engine start-up, and a task's time is its own work.
        """
        from PIL import Image

        image = Image.new("RGB", (448, 448), (128, 128, 128))
        reqs = [Request("warm-up", {"id": 0}, Path(), "Describe the image.", None, 1, lo, hi)
                for lo, hi in ((None, None), (prompts.PERCEPTION_MIN_PIXELS, prompts.PERCEPTION_MAX_PIXELS))]
        self.llm.generate([self.inputs(r, image) for r in reqs], [self.sampling(r) for r in reqs],
                          lora_request=self.lora, use_tqdm=False)

    def inputs(self, r: Request, image) -> dict:
        item = {"prompt": self.prompt(r), "multi_modal_data": {"image": image}}
        if size := r.image_size_kwargs:
            item["mm_processor_kwargs"] = size
        return item

    def sampling(self, r: Request):
        from vllm import SamplingParams

        if r.max_new_tokens == 0:
            return SamplingParams(temperature=0.0, max_tokens=1, logprobs=len(self.level_ids),
                                  allowed_token_ids=self.level_ids)
        n = min(r.max_new_tokens, self.max_new_tokens) if self.max_new_tokens else r.max_new_tokens
        fixed = {"min_tokens": n, "ignore_eos": True} if r.fixed_length else {}
        return SamplingParams(temperature=0.0, max_tokens=n, skip_special_tokens=False,
                              spaces_between_special_tokens=False, **fixed)

    def _generate(self, items: list[dict], params: list) -> list:
        """``LLM.generate`` of *items*; a request vLLM refuses (a prompt longer than the model) becomes its error
        text, and the others still run. vLLM refuses a whole call for one bad request (and withdraws the ones it
        had added), so a refused call is split in halves until the refused requests stand alone."""
        try:
            from vllm.exceptions import VLLMValidationError
        except ImportError:  # older vLLM raised ValueError
            VLLMValidationError = ValueError
        try:
            return self.llm.generate(items, params, lora_request=self.lora, use_tqdm=False)
        except (VLLMValidationError, ValueError) as e:
            if len(items) == 1:
                return [f"refused by vLLM: {e}"]
            half = len(items) // 2
            return self._generate(items[:half], params[:half]) + self._generate(items[half:], params[half:])

    def run(self, requests: list[Request], images: ImageStore | None = None) -> list[dict]:
        ok, outputs = _with_images(requests, images)
        if not ok:
            return outputs
        results = self._generate([self.inputs(r, im) for _, r, im in ok], [self.sampling(r) for _, r, _ in ok])
        for (i, r, _), res in zip(ok, results):
            if isinstance(res, str):
                outputs[i] = {"error": f"{r.image.name}: {res}"}
                continue
            out = res.outputs[0]
            if r.max_new_tokens == 0:
                lp = out.logprobs[0]
                probs = {w: math.exp(lp[t].logprob) for w, t in zip(prompts.SCORING_LEVEL_TOKENS, self.level_ids)}
                total = sum(probs.values())
                outputs[i] = {"probs": {k: v / total for k, v in probs.items()}}
            else:
                text = out.text
                if out.finish_reason == "stop" and out.stop_reason is None:
                    text += EOS  # stopped on the end-of-turn token, as the official raw answers keep it
                outputs[i] = {"text": text}
        return outputs


def _lora_rank(adapter: str) -> int:
    from .lora import adapter_config

    if (Path(adapter) / "adapter_config.json").is_file():
        return int(adapter_config(adapter).get("r", 64))
    return 64


# ------------------------------------------------------------------ openai

class OpenAIBackend(Backend):
    """An OpenAI-compatible chat completions server through the ``openai`` client (its retries with backoff on
    connection errors, 408 / 409 / 429 and 5xx, and its timeout); images travel as data URLs."""

    name = "openai"
    shares_images = True  # a vLLM server caches encodings and prefixes across the requests in flight

    def __init__(self, base_url: str, model: str, api_key: str = "EMPTY", concurrency: int = 8,
                 timeout: float = 120.0, retries: int = 4, max_new_tokens: int | None = None):
        from openai import OpenAI

        self.base_url, self.model = base_url.rstrip("/"), model
        self.concurrency, self.max_new_tokens = concurrency, max_new_tokens
        self.client = OpenAI(base_url=self.base_url, api_key=api_key or "EMPTY", timeout=timeout, max_retries=retries)

    @staticmethod
    def identity(base_url: str, model: str, max_new_tokens: int | None) -> tuple[str, dict]:
        """(fingerprint, settings) of the served *model* at *base_url*, known before any request."""
        served = f"{base_url.rstrip('/')}|{model}"
        return hashlib.sha256(served.encode()).hexdigest()[:16], {"max_new_tokens": max_new_tokens}

    def fingerprint(self) -> str:
        return self.identity(self.base_url, self.model, self.max_new_tokens)[0]

    def settings(self) -> dict:
        return self.identity(self.base_url, self.model, self.max_new_tokens)[1]

    def _post(self, body: dict):
        import openai

        standard = {k: body[k] for k in ("model", "messages", "temperature", "max_tokens", "logprobs", "top_logprobs")
                    if k in body}
        extra = {k: v for k, v in body.items() if k not in standard}  # vLLM's own fields
        try:
            return self.client.chat.completions.create(**standard, extra_body=extra or None)
        except openai.APIStatusError as e:
            raise RuntimeError(f"HTTP {e.status_code}: {str(e.message)[:300]}") from None
        except openai.APIConnectionError as e:  # timeouts included
            raise RuntimeError(f"server unreachable: {e}") from None

    def body(self, r: Request, image) -> dict:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        messages = []
        if r.system is not None:
            messages.append({"role": "system", "content": r.system})
        messages.append({"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                     {"type": "text", "text": r.user}]})
        body = {"model": self.model, "messages": messages, "temperature": 0.0}
        if size := r.image_size_kwargs:
            body["mm_processor_kwargs"] = size  # a vLLM server's field (perception's 4..4,096 tokens)
        if r.max_new_tokens == 0:
            messages.append({"role": "assistant", "content": r.assistant_prefix})
            body.update(max_tokens=1, logprobs=True, top_logprobs=20, continue_final_message=True,
                        add_generation_prompt=False)
        else:
            n = min(r.max_new_tokens, self.max_new_tokens) if self.max_new_tokens else r.max_new_tokens
            body.update(max_tokens=n, skip_special_tokens=False, spaces_between_special_tokens=False)
        return body

    def one(self, r: Request, image) -> dict:
        try:
            resp = self._post(self.body(r, image))
        except RuntimeError as e:
            return {"error": str(e)}
        choice = resp.choices[0]
        if r.max_new_tokens == 0:
            top = (choice.logprobs.content if choice.logprobs else None) or []
            found = {t.token: t.logprob for t in (top[0].top_logprobs if top else [])}
            present = {w: found[w] for w in prompts.SCORING_LEVEL_TOKENS if w in found}
            if not present:
                return {"error": "no quality level among the returned top logprobs"}
            values = _softmax([present.get(w, -1e9) for w in prompts.SCORING_LEVEL_TOKENS])
            return {"probs": dict(zip(prompts.SCORING_LEVEL_TOKENS, values))}
        text = choice.message.content or ""
        if choice.finish_reason == "stop" and not text.endswith(EOS):
            text += EOS
        return {"text": text}

    def run(self, requests: list[Request], images: ImageStore | None = None) -> list[dict]:
        ok, outputs = _with_images(requests, images)
        with ThreadPoolExecutor(self.concurrency) as pool:
            for (i, _, _), out in zip(ok, pool.map(lambda t: self.one(t[1], t[2]), ok)):
                outputs[i] = out
        return outputs


class CachedAnswers(Backend):
    """Stands for a backend whose every answer is already in the caches: nothing is started, nothing computed."""

    name = "cached"

    def __init__(self, fingerprint: str, settings: dict, shares_images: bool):
        self._fingerprint, self._settings, self.shares_images = fingerprint, settings, shares_images

    def fingerprint(self) -> str:
        return self._fingerprint

    def settings(self) -> dict:
        return self._settings

    def run(self, requests: list[Request], images: ImageStore | None = None) -> list[dict]:
        raise RuntimeError(f"{len(requests)} requests have no cached answer, and no engine was started")


def make_backend(name: str, model: str, **kw) -> Backend:
    if name == "hf":
        return HFBackend(model, **{k: v for k, v in kw.items() if k in ("adapter", "batch_size", "device", "dtype",
                                                                       "max_new_tokens")})
    if name == "vllm":
        return VLLMBackend(model, **{k: v for k, v in kw.items() if k not in ("batch_size", "device", "dtype",
                                                                             "base_url", "api_key", "concurrency")})
    if name == "openai":
        return OpenAIBackend(kw["base_url"], model, api_key=kw.get("api_key") or "EMPTY",
                             concurrency=kw.get("concurrency", 8), max_new_tokens=kw.get("max_new_tokens"))
    raise ValueError(f"unknown backend {name!r}")


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means vLLM cannot run here
        return False
    return True
