"""Interface strings of ViDA-Bench.

A model fine-tuned on ViDA was trained on these exact strings; a changed
character changes its answers, so they are kept byte for byte.
"""

DEFAULT_SYSTEM = "You are a helpful assistant."

# Quality scoring (Q-Align): the assistant turn is pre-filled and the score is
# the expectation of the level weights under the next-token distribution.
SCORING_SYSTEM = (
    "You are an expert in image quality assessment. Your task is to give a one-sentence "
    "assessment of the image quality: The quality of the image is (one of the following "
    "five quality levels: bad, poor, fair, good, excellent)."
)
SCORING_USER = "Assess the quality of this image."
SCORING_ASSISTANT_PREFIX = "The quality of the image is"
SCORING_LEVEL_TOKENS = (" excellent", " good", " fair", " poor", " bad")
SCORING_LEVEL_WEIGHTS = (5, 4, 3, 2, 1)

# Perception (MCQ).
PERCEPTION_SYSTEM = None  # the chat template's default system prompt
PERCEPTION_OPTION_FORMAT = "{letter}. {candidate}"
PERCEPTION_SUFFIX = "Answer with a single option's letter (A, B, C, ...) from the given choices directly."
PERCEPTION_MAX_NEW_TOKENS = 10
PERCEPTION_MIN_PIXELS = 4 * 28 * 28
PERCEPTION_MAX_PIXELS = 4096 * 28 * 28

# Grounding (region perception + distortion detection).
GROUNDING_SYSTEM = "You are an expert in image quality assessment."
DETECTION_QUESTION = "Please provide the bounding box coordinates of all distortions in the image."
GROUNDING_MAX_NEW_TOKENS = 512

# Reasoning description.
DESCRIPTION_SYSTEM = (
    "You are an expert in image quality assessment. Your task is to assess the overall quality of the provided image.\n"
    "To assess the image quality, you should think step by step.\n"
    "First step, provide a brief description of the image content.\n"
    "Second step, find distortions and analyze their impact on specific regions.\n"
    "- If there is no distortion present in the image, focus solely on what you observe in the image and describe "
    "the image's visual aspects, such as visibility, detail discernment, clarity, brightness, lighting, composition, "
    "and texture.\n"
    "- If distortions are present, identify the distortions and briefly analyze each occurrence of every distortion "
    "type. Explain how each distortion affects the visual appearance and perception of specific objects or regions in "
    "the image. Find each distortion with grounding, which means in the response you should directly output the "
    "bounding box coordinates after identifying the distortions. The bounding box coordinates should be in the format "
    "(x1,y1),(x2,y2), where (x1,y1) is the top-left corner and (x2,y2) is the bottom-right corner. All coordinates "
    "are normalized to the range of 0 to 1000.\n"
    "Third step, analyze the overall image quality and visual perception. If distortions are present, identify the "
    "key distortions that have the most significant impact on the overall image quality. Provide detailed reasoning "
    "about how these key distortions affect the image's overall visual perception, especially regarding low-level "
    "features like sharpness, clarity, and detail. Combine the analysis of key degradations and low-level attributes "
    "into a cohesive paragraph.\n"
    "Final step, conclude your answer with this sentence: Thus, the quality of the image is (one of the following "
    "five quality levels: bad, poor, fair, good, excellent).\n"
    "Separate each step with a line break."
)
DESCRIPTION_USER = "Please evaluate the image quality in detail and provide your reasons."
DESCRIPTION_MAX_NEW_TOKENS = 2048

OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def perception_question(question: str, candidates: list[str]) -> str:
    """The MCQ user text: question, one 'A. ...' line per candidate, then the instruction."""
    options = [PERCEPTION_OPTION_FORMAT.format(letter=OPTION_LETTERS[i], candidate=c) for i, c in enumerate(candidates)]
    return "\n".join([question, *options, PERCEPTION_SUFFIX])
