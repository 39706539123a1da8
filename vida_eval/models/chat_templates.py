"""The chat templates of the Instruct checkpoints, as their tokenizer_config.json / chat_template.json render them.

Only the parts ViDA uses are written out (a system turn, user turns of images
and text, assistant turns); tool calls are not. Qwen2-VL and Qwen2.5-VL share
one template, which adds "You are a helpful assistant." when no system turn is
given; Qwen3-VL Instruct adds none.
"""

_CONTENT = (
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
)
_COUNTERS = "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
_GENERATION = "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"

QWEN2_VL_CHAT_TEMPLATE = (
    _COUNTERS + "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n" + _CONTENT + "<|im_end|>\n{% endfor %}" + _GENERATION
)
QWEN3_VL_CHAT_TEMPLATE = (
    _COUNTERS + "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n" + _CONTENT + "<|im_end|>\n{% endfor %}" + _GENERATION
)
