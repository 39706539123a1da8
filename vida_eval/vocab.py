"""ViDA vocabulary: distortion types, severities, quality levels."""

DISTORTION_TYPES = (
    "Low clarity",
    "Edge aliasing effect",
    "Blocking artifacts",
    "Underexposure",
    "Out of focus blur",
    "Overexposure",
    "Noise",
    "Meaningless solid color",
    "Motion blur",
    "Edge ringing effect",
)
SEVERITIES = ("Slight", "Moderate", "Severe")
# Older files say "Minor" where newer ones say "Slight".
SEVERITY_ALIASES = {"minor": "Slight"}
QUALITY_LEVELS = ("bad", "poor", "fair", "good", "excellent")
LEVEL_WEIGHT = {level: i + 1 for i, level in enumerate(QUALITY_LEVELS)}
MCQ_CONCERNS = ("position", "type", "significance", "severity")
NO_DISTORTION = "No distortion"


def canonical_severity(word: str) -> str | None:
    """'moderate' -> 'Moderate', 'Minor' -> 'Slight'; None for anything else."""
    low = word.strip().lower()
    if low in SEVERITY_ALIASES:
        return SEVERITY_ALIASES[low]
    for s in SEVERITIES:
        if s.lower() == low:
            return s
    return None


def canonical_distortion(name: str) -> str | None:
    """Case-insensitive lookup of a known type ('blocking artifact' included); None when unknown."""
    low = name.strip().lower().replace("_", " ")
    for t in DISTORTION_TYPES:
        if t.lower() == low or t.lower().rstrip("s") == low:
            return t
    return None
